// Hostile bytes into the AMI frame reader. Whoever can write to the AMI socket (or hand us a recording) controls
// these bytes, so the reader must never throw, never hold more than its per-message cap however long a line gets,
// and frame a byte stream the same way whatever the TCP segmentation.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { AmiFrameReader, type AmiFrame } from '../../src/ami/frame-reader.js';
import { normalise } from '../../src/events/normalise.js';

let cases = 0;
const started = performance.now();
after(() => {
  console.log(`fuzz reader: ${cases} cases in ${Math.round(performance.now() - started)} ms`);
});

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Pieces that matter to a framer: line ends alone and doubled, CR without LF, NUL, broken UTF-8, the banner. */
const special = fc.constantFrom(
  ...[
    '\r\n', '\n', '\r', '\r\n\r\n', '\n\n', '\r\r\n', '\n\r\n', '\0', '\0\r\n', ': ', ':', 'Event: ', 'Privilege: security,all\r\n',
    'RemoteAddress: IPV4/UDP/198.18.0.11/5060\r\n', 'Asterisk Call Manager/', 'Asterisk Call Manager/11.0.0\r\n',
  ].map(latin1),
  // a lone continuation byte, a truncated 2-byte sequence, half a 3-byte one, a 4-byte one, an encoded surrogate,
  // an overlong NUL, and bytes that are never UTF-8
  ...[[0x80], [0xc3], [0xe2, 0x82], [0xf0, 0x9f, 0x98, 0x80], [0xed, 0xa0, 0x80], [0xc0, 0x80], [0xfe], [0xff]].map((b) => Buffer.from(b)),
);

const headerLine = fc
  .tuple(fc.string({ unit: 'binary', maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 60 }), fc.constantFrom('\r\n', '\n', '\r'))
  .map(([k, v, end]) => Buffer.from(`${k}: ${v}${end}`, 'utf8'));

/** Longer than the small caps used below, so oversized lines and messages come up in most streams. */
const run = fc
  .tuple(fc.integer({ min: 1, max: 4000 }), fc.constantFrom(0x41, 0x00, 0x0d, 0xff, 0x3a))
  .map(([n, byte]) => Buffer.alloc(n, byte));

const piece = fc.oneof(
  { weight: 4, arbitrary: special },
  { weight: 3, arbitrary: headerLine },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: run },
);

const stream = fc.array(piece, { maxLength: 50 }).map((pieces) => Buffer.concat(pieces));
const cap = fc.oneof(fc.integer({ min: 16, max: 600 }), fc.constant(64 * 1024));
const cuts = fc.array(fc.nat(), { maxLength: 30 });

function chunk(bytes: Buffer, at: readonly number[]): Buffer[] {
  const points = [...new Set(at.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort((a, b) => a - b);
  const bounds = [0, ...points, bytes.length];
  return bounds.slice(1).map((end, i) => bytes.subarray(bounds[i], end));
}

interface Outcome {
  frames: AmiFrame[];
  discarded: number;
  buffered: number;
}

/** Feeds the chunks and checks the cap after every push. */
function feed(chunks: readonly Buffer[], maxMessageBytes: number): Outcome {
  const reader = new AmiFrameReader({ maxMessageBytes });
  const frames: AmiFrame[] = [];
  for (const c of chunks) {
    frames.push(...reader.push(c));
    assert.ok(reader.bufferedBytes <= maxMessageBytes, `holds ${reader.bufferedBytes} bytes, cap ${maxMessageBytes}`);
  }
  return { frames, discarded: reader.discarded, buffered: reader.bufferedBytes };
}

test('random hostile streams: no throw, never more than the cap held, every frame within the cap and well formed', () => {
  fc.assert(
    fc.property(stream, cap, cuts, (bytes, max, at) => {
      cases++;
      const { frames } = feed(chunk(bytes, at), max);
      for (const f of frames) {
        // one byte decodes to at most one UTF-16 unit (U+FFFD for a bad one), so this bounds the bytes kept too
        assert.ok(f.raw.length <= max, `a ${f.raw.length}-character frame with cap ${max}`);
        assert.ok(f.raw.endsWith('\n'));
        if (f.banner) {
          assert.ok(f.raw.startsWith('Asterisk Call Manager'));
          assert.deepEqual(f.headers, {});
        } else {
          assert.ok(/\n\r?\n$/.test(f.raw), 'a message ends with an empty line');
          assert.ok(!/^\r?\n/.test(f.raw), 'stray blank lines are not messages');
        }
        normalise(f.headers, 0); // must not throw on whatever came out
      }
    }),
    { numRuns: 12_000 },
  );
});

test('the same bytes in any two chunkings give the same frames and the same state', () => {
  fc.assert(
    fc.property(stream, cap, cuts, cuts, (bytes, max, a, b) => {
      cases++;
      const whole = feed([bytes], max);
      assert.deepEqual(feed(chunk(bytes, a), max), whole);
      assert.deepEqual(feed(chunk(bytes, b), max), whole);
      // byte by byte is the worst segmentation TCP can produce
      if (bytes.length <= 2000) assert.deepEqual(feed(chunk(bytes, [...bytes.keys()]), max), whole);
    }),
    { numRuns: 8_000 },
  );
});

/** Content of one header line: any bytes but LF, not empty and not a lone CR (either would end the message). */
const lineContent = fc
  .oneof(
    fc.uint8Array({ minLength: 1, maxLength: 40 }).map((a) => Buffer.from(a.map((x) => (x === 0x0a ? 0x20 : x)))),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }).map((s) => Buffer.from(s.replaceAll('\n', ' '), 'utf8')),
    fc.integer({ min: 1, max: 1500 }).map((n) => Buffer.alloc(n, 0x78)),
  )
  .filter((b) => !(b.length === 1 && b[0] === 0x0d));

const eol = fc.constantFrom('\r\n', '\n').map(latin1);

type Item = { kind: 'message'; bytes: Buffer } | { kind: 'banner'; bytes: Buffer } | { kind: 'blank'; bytes: Buffer };

const message = fc
  .array(fc.tuple(lineContent, eol), { minLength: 1, maxLength: 8 })
  .chain((lines) => eol.map((end) => Buffer.concat([...lines.flatMap(([c, e]) => [c, e]), end])))
  // a first line that starts like the banner is the banner's business, generated separately
  .filter((b) => !b.subarray(0, 21).equals(latin1('Asterisk Call Manager')))
  .map((bytes): Item => ({ kind: 'message', bytes }));
const banner = fc
  .tuple(fc.stringMatching(/^[0-9.]{1,12}$/), eol)
  .map(([v, e]): Item => ({ kind: 'banner', bytes: Buffer.concat([latin1(`Asterisk Call Manager/${v}`), e]) }));
const blank = eol.map((bytes): Item => ({ kind: 'blank', bytes }));

test('well-formed messages come out exactly, oversized ones are counted and do not disturb their neighbours', () => {
  const items = fc.array(fc.oneof({ weight: 6, arbitrary: message }, { weight: 1, arbitrary: banner }, { weight: 1, arbitrary: blank }), {
    maxLength: 25,
  });
  fc.assert(
    fc.property(items, fc.integer({ min: 64, max: 3000 }), cuts, (list, max, at) => {
      cases++;
      const expected: Array<{ raw: string; banner: boolean }> = [];
      let oversized = 0;
      for (const item of list) {
        if (item.kind === 'blank') continue;
        if (item.bytes.length > max) oversized++;
        else expected.push({ raw: item.bytes.toString('utf8'), banner: item.kind === 'banner' });
      }
      const out = feed(chunk(Buffer.concat(list.map((i) => i.bytes)), at), max);
      assert.deepEqual(out.frames.map((f) => ({ raw: f.raw, banner: f.banner })), expected);
      assert.equal(out.discarded, oversized);
      assert.equal(out.buffered, 0);
    }),
    { numRuns: 8_000 },
  );
});

test('10 MB without a newline (letters, NULs, bare CRs, non-UTF-8) is dropped within the cap, and reading resumes', () => {
  const event = 'Event: InvalidPassword\r\nPrivilege: security,all\r\nRemoteAddress: IPV4/UDP/198.18.0.11/5060\r\n\r\n';
  for (const fill of [0x41, 0x00, 0x0d, 0xff]) {
    const flood = Buffer.alloc(10 * 1024 * 1024, fill);
    for (const chunkSize of [64 * 1024, 1500, flood.length]) {
      const reader = new AmiFrameReader();
      const t0 = performance.now();
      for (let i = 0; i < flood.length; i += chunkSize) {
        assert.deepEqual(reader.push(flood.subarray(i, i + chunkSize)), []);
        assert.ok(reader.bufferedBytes <= reader.maxMessageBytes);
      }
      const ms = performance.now() - t0;
      assert.ok(ms < 2_000, `10 MB in ${chunkSize}-byte chunks took ${Math.round(ms)} ms`);
      // the flood's own line ends here; the blank line after it ends the discarded message
      const frames = reader.push(`\r\n\r\n${event}`);
      assert.equal(reader.discarded, 1);
      assert.deepEqual(frames.map((f) => f.raw), [event]);
      assert.equal(frames[0]!.headers['remoteaddress'], 'IPV4/UDP/198.18.0.11/5060');
      cases++;
    }
  }
});

test('a stream that ends without its blank line yields nothing and holds at most the cap', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(lineContent, eol), { minLength: 1, maxLength: 30 }), fc.integer({ min: 16, max: 2000 }), (lines, max) => {
      cases++;
      const bytes = Buffer.concat(lines.flatMap(([c, e]) => [c, e]));
      if (bytes.subarray(0, 21).equals(latin1('Asterisk Call Manager'))) return;
      const out = feed([bytes], max);
      assert.deepEqual(out.frames, []);
      assert.equal(out.buffered, bytes.length <= max ? bytes.length : 0);
    }),
    { numRuns: 4_000 },
  );
});
