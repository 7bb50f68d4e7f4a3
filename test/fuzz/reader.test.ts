// Hostile bytes into the AMI frame reader. Whoever can write to the AMI socket (or hand us a recording) controls
// these bytes, so the reader must never throw, never hold more than its bounds however long a line gets, frame a
// byte stream the same way whatever the TCP segmentation, and do work linear in what it is given.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { AmiFrameReader, frameText, type FrameReaderOptions } from '../../src/ami/frame-reader.js';

let cases = 0;
const started = performance.now();
after(() => {
  console.log(`fuzz reader: ${cases} cases in ${Math.round(performance.now() - started)} ms`);
});

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Pieces that matter to a framer: line ends alone and doubled, CR without LF, NUL, broken UTF-8, the banner. */
const special = fc.constantFrom(
  ...[
    '\r\n',
    '\n',
    '\r',
    '\r\n\r\n',
    '\n\n',
    '\r\r\n',
    '\n\r\n',
    '\0',
    '\0\r\n',
    ': ',
    ':',
    'Event: ',
    'Privilege: security,all\r\n',
    'RemoteAddress: IPV4/UDP/198.18.0.11/5060\r\n',
    'Asterisk Call Manager/',
    'Asterisk Call Manager/11.0.0\r\n',
  ].map(latin1),
  ...[[0x80], [0xc3], [0xe2, 0x82], [0xf0, 0x9f, 0x98, 0x80], [0xed, 0xa0, 0x80], [0xc0, 0x80], [0xfe], [0xff]].map((b) => Buffer.from(b)),
);

const headerLine = fc
  .tuple(fc.string({ unit: 'binary', maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 60 }), fc.constantFrom('\r\n', '\n', '\r'))
  .map(([k, v, end]) => Buffer.from(`${k}: ${v}${end}`, 'utf8'));

/** Longer than the small bounds used below, so oversized lines and messages come up in most streams. */
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
const bounds = fc.oneof(
  fc.record({
    maxFrameBytes: fc.integer({ min: 16, max: 600 }),
    maxLineBytes: fc.integer({ min: 8, max: 300 }),
    maxLines: fc.integer({ min: 1, max: 12 }),
  }),
  fc.constant({}),
);
const cuts = fc.array(fc.nat(), { maxLength: 30 });

function chunk(bytes: Buffer, at: readonly number[]): Buffer[] {
  const points = [...new Set(at.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort((a, b) => a - b);
  const ends = [0, ...points, bytes.length];
  return ends.slice(1).map((end, i) => bytes.subarray(ends[i], end));
}

interface Outcome {
  frames: Array<{ raw: string; banner: boolean; lines: number }>;
  oversized: number;
  buffered: number;
  copied: number;
}

/** Feeds the chunks and checks the bound after every read. */
function feed(chunks: readonly Buffer[], options: FrameReaderOptions): Outcome {
  const frames: Outcome['frames'] = [];
  const reader = new AmiFrameReader((f) => frames.push({ raw: frameText(f), banner: f.banner, lines: f.lines }), options);
  const max = options.maxFrameBytes ?? 64 * 1024;
  for (const c of chunks) {
    reader.push(c);
    assert.ok(reader.bufferedBytes <= max, `holds ${reader.bufferedBytes} bytes, bound ${max}`);
  }
  return { frames, oversized: reader.stats.oversized, buffered: reader.bufferedBytes, copied: reader.stats.copied };
}

test('the same bytes in any two chunkings give the same frames and the same state; copies stay linear', () => {
  fc.assert(
    fc.property(stream, bounds, cuts, cuts, (bytes, options, a, b) => {
      cases++;
      const whole = feed([bytes], options);
      const strip = (o: Outcome): Omit<Outcome, 'copied'> => ({ frames: o.frames, oversized: o.oversized, buffered: o.buffered });
      const x = feed(chunk(bytes, a), options);
      assert.deepEqual(strip(x), strip(whole));
      assert.deepEqual(strip(feed(chunk(bytes, b), options)), strip(whole));
      // byte by byte is the worst segmentation TCP can produce
      if (bytes.length <= 2000) {
        const bytewise = feed(chunk(bytes, [...bytes.keys()]), options);
        assert.deepEqual(strip(bytewise), strip(whole));
        // each byte is copied into a piece and once more when its message completes; a first line twice more (the check
        // for a greeting split across reads)
        assert.ok(bytewise.copied <= 4 * bytes.length + 64, `${bytewise.copied} bytes copied for ${bytes.length}`);
      }
    }),
    { numRuns: 8_000 },
  );
});

/** Content of one line: any bytes without CR LF in them, not empty (an empty line ends the message). */
const lineContent = fc
  .oneof(
    fc.uint8Array({ minLength: 1, maxLength: 40 }).map((a) => Buffer.from(a)),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }).map((s) => Buffer.from(s, 'utf8')),
    fc.integer({ min: 1, max: 1500 }).map((n) => Buffer.alloc(n, 0x78)),
  )
  .map((b) => latin1(b.toString('latin1').replaceAll('\r\n', '\r.')));

const CRLF = latin1('\r\n');

type Item = { kind: 'message'; bytes: Buffer; lines: Buffer[] } | { kind: 'banner'; bytes: Buffer } | { kind: 'blank'; bytes: Buffer };

const message = fc
  .array(lineContent, { minLength: 1, maxLength: 8 })
  // a first line that starts like the greeting is the greeting's business, generated separately
  .filter((lines) => !lines[0]!.subarray(0, 21).equals(latin1('Asterisk Call Manager')))
  .map((lines): Item => ({ kind: 'message', lines, bytes: Buffer.concat([...lines.flatMap((l) => [l, CRLF]), CRLF]) }));
const banner = fc.stringMatching(/^[0-9.]{1,12}$/).map((v): Item => ({ kind: 'banner', bytes: latin1(`Asterisk Call Manager/${v}\r\n`) }));
const blank = fc.constant<Item>({ kind: 'blank', bytes: CRLF });

test('well-formed messages come out exactly, oversized ones are counted and do not disturb their neighbours', () => {
  const items = fc.array(fc.oneof({ weight: 6, arbitrary: message }, { weight: 1, arbitrary: banner }, { weight: 1, arbitrary: blank }), {
    maxLength: 25,
  });
  fc.assert(
    fc.property(
      items,
      fc.integer({ min: 64, max: 3000 }),
      fc.integer({ min: 40, max: 1600 }),
      fc.integer({ min: 1, max: 9 }),
      cuts,
      (list, maxFrameBytes, maxLineBytes, maxLines, at) => {
        cases++;
        const expected: Array<{ raw: string; banner: boolean }> = [];
        let oversized = 0;
        for (const item of list) {
          if (item.kind === 'blank') continue;
          const tooBig =
            item.bytes.length > maxFrameBytes ||
            (item.kind === 'message' && (item.lines.length > maxLines || item.lines.some((l) => l.length > maxLineBytes)));
          if (tooBig) oversized++;
          else expected.push({ raw: item.bytes.toString('utf8'), banner: item.kind === 'banner' });
        }
        const out = feed(chunk(Buffer.concat(list.map((i) => i.bytes)), at), { maxFrameBytes, maxLineBytes, maxLines, banner: 'any' });
        assert.deepEqual(
          out.frames.map((f) => ({ raw: f.raw, banner: f.banner })),
          expected,
        );
        assert.equal(out.oversized, oversized);
        assert.equal(out.buffered, 0);
      },
    ),
    { numRuns: 8_000 },
  );
});

test('10 MB without a line end (letters, NULs, bare CRs, non-UTF-8) is dropped within the bound, and reading resumes', () => {
  const event = 'Event: InvalidPassword\r\nPrivilege: security,all\r\nRemoteAddress: IPV4/UDP/198.18.0.11/5060\r\n\r\n';
  for (const fill of [0x41, 0x00, 0x0d, 0xff]) {
    const flood = Buffer.alloc(10 * 1024 * 1024, fill);
    for (const chunkSize of [64 * 1024, 1500, flood.length]) {
      const out: string[] = [];
      const reader = new AmiFrameReader((f) => out.push(frameText(f)));
      for (let i = 0; i < flood.length; i += chunkSize) {
        reader.push(flood.subarray(i, i + chunkSize));
        assert.ok(reader.bufferedBytes <= 64 * 1024);
      }
      assert.deepEqual(out, []);
      // work stays linear: nothing is copied once the bound is crossed
      assert.ok(reader.stats.copied <= 2 * 64 * 1024 + chunkSize, `${reader.stats.copied} bytes copied`);
      // the flood's own line ends here; the empty line after it ends the dropped message
      reader.push(latin1(`\r\n\r\n${event}`));
      assert.equal(reader.stats.oversized, 1);
      assert.deepEqual(out, [event]);
      cases++;
    }
  }
});

test('a stream that ends without its empty line yields nothing and holds at most the bound', () => {
  fc.assert(
    fc.property(fc.array(lineContent, { minLength: 1, maxLength: 30 }), fc.integer({ min: 16, max: 2000 }), (lines, maxFrameBytes) => {
      cases++;
      const bytes = Buffer.concat(lines.flatMap((l) => [l, CRLF]));
      if (bytes.subarray(0, 21).equals(latin1('Asterisk Call Manager'))) return;
      const out = feed([bytes], { maxFrameBytes, maxLineBytes: 1 << 20, maxLines: 1000 });
      assert.deepEqual(out.frames, []);
      assert.equal(out.buffered, bytes.length <= maxFrameBytes ? bytes.length : 0);
    }),
    { numRuns: 4_000 },
  );
});
