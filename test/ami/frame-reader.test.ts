import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { AmiFrameReader, DEFAULT_MAX_MESSAGE_BYTES, parseHeaderBlock, type AmiFrame } from '../../src/ami/frame-reader.js';
import { SCENARIOS, amiBytes, jsonlRecords } from './fixtures.js';

function readAll(chunks: Iterable<Buffer | string>, reader = new AmiFrameReader()): AmiFrame[] {
  const out: AmiFrame[] = [];
  for (const c of chunks) out.push(...reader.push(c));
  return out;
}

test('there are recordings to read', () => {
  assert.ok(SCENARIOS.length >= 10, SCENARIOS.join(','));
});

for (const s of SCENARIOS) {
  test(`${s}.ami yields exactly the messages of ${s}.jsonl`, () => {
    const expected = jsonlRecords(s).map((r) => r.raw);
    const reader = new AmiFrameReader();
    const frames = readAll([amiBytes(s)], reader);
    assert.equal(frames.length, expected.length);
    assert.deepEqual(frames.map((f) => f.raw), expected);
    assert.deepEqual(frames.map((f) => f.banner), expected.map((r) => r.startsWith('Asterisk Call Manager/')));
    assert.equal(reader.bufferedBytes, 0);
    assert.equal(reader.discarded, 0);
  });
}

test('the pjsip ChallengeResponseFailed keeps its Response header and empty ExpectedResponse', () => {
  const frame = readAll([amiBytes('register-bruteforce')]).find((f) => f.headers['event'] === 'ChallengeResponseFailed');
  assert.ok(frame);
  assert.match(String(frame.headers['response']), /^[0-9a-f]{32}$/);
  assert.equal(frame.headers['expectedresponse'], '');
  assert.equal(frame.headers['remoteaddress'], 'IPV4/UDP/198.18.0.11/5060');
});

test('splitting asterisk-restart.ami at every byte boundary gives the same messages', () => {
  const bytes = amiBytes('asterisk-restart');
  const whole = readAll([bytes]).map((f) => f.raw);
  for (let i = 1; i < bytes.length; i++) {
    const split = readAll([bytes.subarray(0, i), bytes.subarray(i)]).map((f) => f.raw);
    assert.deepEqual(split, whole, `split at byte ${i}`);
  }
});

test('random chunking of a recording gives the same messages (fast-check)', () => {
  const bytes = amiBytes('chansip-legit-phone');
  const whole = readAll([bytes]).map((f) => f.raw);
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 200 }), (cuts) => {
      const points = [0, ...cuts.sort((a, b) => a - b), bytes.length];
      const chunks = points.slice(1).map((end, i) => bytes.subarray(points[i], end));
      assert.deepEqual(readAll(chunks).map((f) => f.raw), whole);
    }),
    { numRuns: 300 },
  );
});

test('a UTF-8 character split across chunks survives; invalid bytes become U+FFFD; NUL is kept', () => {
  const text = Buffer.from('Event: Test\r\nAccountID: Jürgen\u20ac\r\nNul: a\u0000b\r\n\r\n', 'utf8');
  const cut = text.indexOf(0xe2) + 1; // inside the three bytes of the euro sign
  const [frame] = readAll([text.subarray(0, cut), text.subarray(cut)]);
  assert.equal(frame?.headers['accountid'], 'Jürgen\u20ac');
  assert.equal(frame?.headers['nul'], 'a\u0000b');

  const bad = Buffer.concat([Buffer.from('Event: Test\r\nAccountID: x'), Buffer.from([0xff, 0xc3]), Buffer.from('y\r\n\r\n')]);
  assert.equal(readAll([bad])[0]?.headers['accountid'], 'x\ufffd\ufffdy');
});

test('bare LF, stray blank lines, the banner without a blank line, and back-to-back banners', () => {
  const frames = readAll(['\r\n\nAsterisk Call Manager/9.0.0\r\nEvent: A\nX: 1\n\n\r\nAsterisk Call Manager/11.0.0\nEvent: B\r\n\r\n']);
  assert.deepEqual(
    frames.map((f) => [f.banner, f.raw]),
    [
      [true, 'Asterisk Call Manager/9.0.0\r\n'],
      [false, 'Event: A\nX: 1\n\n'],
      [true, 'Asterisk Call Manager/11.0.0\n'],
      [false, 'Event: B\r\n\r\n'],
    ],
  );
  assert.deepEqual(frames[1]?.headers, { event: 'A', x: '1' });
  // Only at the start of a message is that text a banner.
  assert.deepEqual(readAll(['Event: C\r\nAsterisk Call Manager/1.0\r\n\r\n'])[0]?.headers, {
    event: 'C',
    'asterisk call manager/1.0': '',
  });
});

test('header rules follow asterisk-manager: first ": " splits, keys trimmed and lower-cased, repeats collect', () => {
  const h = parseHeaderBlock(
    'Event: X\r\n Foo Bar : a: b\r\nChallenge:\r\nExpectedResponse: \r\nVariable: a=1\r\nVariable: b=2\r\nVariable: c=3\r\n\r\n',
  );
  assert.deepEqual(h, {
    event: 'X',
    'foo bar': 'a: b',
    'challenge:': '',
    expectedresponse: '',
    variable: ['a=1', 'b=2', 'c=3'],
  });
});

test('headers named like Object.prototype members stay plain data', () => {
  const h = parseHeaderBlock('__proto__: evil\r\nConstructor: c\r\ntoString: t\r\n\r\n');
  assert.equal(Object.getPrototypeOf(h), Object.prototype);
  assert.equal(h['__proto__' as string], 'evil');
  assert.equal(h['constructor'], 'c');
  assert.equal(h['tostring'], 't');
  assert.deepEqual(Object.keys(h), ['__proto__', 'constructor', 'tostring']);
});

test('a message of exactly the cap is kept; one byte more is discarded and counted', () => {
  const cap = 256;
  const make = (size: number): string => {
    const head = 'Event: Pad\r\nPad: ';
    return head + 'p'.repeat(size - head.length - 4) + '\r\n\r\n';
  };
  const reader = new AmiFrameReader({ maxMessageBytes: cap });
  const frames = readAll([make(cap), make(cap + 1), 'Event: Next\r\n\r\n'], reader);
  assert.deepEqual(frames.map((f) => f.raw.length), [cap, 'Event: Next\r\n\r\n'.length]);
  assert.equal(reader.discarded, 1);
});

test('a 1 MB header line is discarded up to its blank line; the next message parses', () => {
  const reader = new AmiFrameReader();
  const big = `Event: Huge\r\nJunk: ${'J'.repeat(1024 * 1024)}\r\nMore: x\r\n\r\n`;
  const next = 'Event: FullyBooted\r\nPrivilege: system,all\r\n\r\n';
  const input = Buffer.from(big + next);
  const frames: AmiFrame[] = [];
  for (let i = 0; i < input.length; i += 50_000) {
    frames.push(...reader.push(input.subarray(i, i + 50_000)));
    assert.ok(reader.bufferedBytes <= DEFAULT_MAX_MESSAGE_BYTES, `${reader.bufferedBytes} buffered`);
  }
  assert.deepEqual(frames.map((f) => f.raw), [next]);
  assert.equal(reader.discarded, 1);
});

test('10 MB without a newline keeps memory bounded; after its end the stream recovers', () => {
  const reader = new AmiFrameReader();
  const mb = Buffer.alloc(1024 * 1024, 0x41);
  const heapBefore = process.memoryUsage().heapUsed;
  for (let i = 0; i < 10; i++) {
    assert.deepEqual(reader.push(mb), []);
    assert.ok(reader.bufferedBytes <= DEFAULT_MAX_MESSAGE_BYTES);
  }
  assert.ok(process.memoryUsage().heapUsed - heapBefore < 8 * 1024 * 1024, 'heap grew with the junk');
  // The junk is one line of a message: its own end (line end, blank line) closes the discarded message.
  const frames = reader.push('\r\n\r\nEvent: After\r\n\r\n');
  assert.deepEqual(frames.map((f) => f.headers), [{ event: 'After' }]);
  assert.equal(reader.discarded, 1);
  assert.equal(reader.bufferedBytes, 0);
});

test('the blank line that ends a discarded message may be split across chunks', () => {
  const reader = new AmiFrameReader({ maxMessageBytes: 64 });
  const frames = readAll(['Event: Big\r\nX: ', 'y'.repeat(100), '\r', '\n', '\r', '\n', 'Event: Ok\r', '\n\r\n'], reader);
  assert.deepEqual(frames.map((f) => f.raw), ['Event: Ok\r\n\r\n']);
  assert.equal(reader.discarded, 1);
});

test('random bytes in random chunks never throw and never exceed the cap (fast-check)', () => {
  // Bytes drawn mostly from the characters that steer the framer, so the interesting paths are taken.
  const byte = fc.oneof(
    fc.constantFrom(0x0a, 0x0d, 0x3a, 0x20, 0x00, 0x41, 0xff, 0xc3),
    fc.integer({ min: 0, max: 255 }),
  );
  fc.assert(
    fc.property(fc.array(fc.array(byte, { maxLength: 300 }), { maxLength: 8 }), fc.integer({ min: 16, max: 400 }), (chunks, cap) => {
      const reader = new AmiFrameReader({ maxMessageBytes: cap });
      for (const c of chunks) {
        for (const f of reader.push(Buffer.from(c))) {
          assert.ok(f.raw.endsWith('\n'));
          assert.equal(typeof f.headers, 'object');
        }
        assert.ok(reader.bufferedBytes <= cap);
      }
    }),
    { numRuns: 3000 },
  );
});

test('strings that are arbitrary text are framed like their UTF-8 bytes (fast-check)', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 400 }), fc.integer({ min: 0, max: 400 }), (s, cut) => {
      const bytes = Buffer.from(s, 'utf8');
      const a = readAll([s]).map((f) => f.raw);
      const b = readAll([bytes.subarray(0, cut), bytes.subarray(cut)]).map((f) => f.raw);
      assert.deepEqual(b, a);
    }),
    { numRuns: 1000 },
  );
});

test('throughput on a large synthetic stream', (t) => {
  const one = amiBytes('acl-violation');
  const copies = 60;
  const stream = Buffer.concat(Array.from({ length: copies }, () => one));
  const expected = readAll([one]).length * copies;
  const reader = new AmiFrameReader();
  const started = performance.now();
  let n = 0;
  for (let i = 0; i < stream.length; i += 65_536) n += reader.push(stream.subarray(i, i + 65_536)).length;
  const ms = performance.now() - started;
  assert.equal(n, expected);
  const rate = Math.round((n / ms) * 1000);
  t.diagnostic(`${n} messages, ${(stream.length / 1e6).toFixed(1)} MB in ${ms.toFixed(0)} ms: ${rate} messages/s`);
  assert.ok(rate > 20_000, `${rate} messages/s`);
});
