import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AmiFrameReader, MAX_FRAME_BYTES, MAX_LINE_BYTES, MAX_LINES, frameText } from '../../src/ami/frame-reader.js';
import { SCENARIOS, amiBytes, jsonlRecords } from './fixtures.js';
import { raws, readAll } from './read.js';

const ANY = { banner: 'any' } as const;

test('there are recordings to read', () => {
  assert.ok(SCENARIOS.length >= 10, SCENARIOS.join(','));
});

for (const s of SCENARIOS) {
  test(`${s}.ami yields exactly the messages of ${s}.jsonl`, () => {
    const expected = jsonlRecords(s).map((r) => r.raw);
    const { frames, reader } = readAll([amiBytes(s)], ANY);
    assert.deepEqual(
      frames.map((f) => f.raw),
      expected,
    );
    assert.deepEqual(
      frames.map((f) => f.banner),
      expected.map((r) => r.startsWith('Asterisk Call Manager/')),
    );
    assert.equal(reader.bufferedBytes, 0);
    assert.equal(reader.stats.oversized, 0);
  });
}

test('the pjsip ChallengeResponseFailed keeps its Response line and its empty ExpectedResponse', () => {
  const frame = readAll([amiBytes('register-bruteforce')], ANY).frames.find((f) => f.lines[0] === 'Event: ChallengeResponseFailed');
  assert.ok(frame);
  assert.match(
    frame.lines.find((l) => l.startsWith('Response: '))!,
    /^Response: [0-9a-f]{32}$/,
  );
  assert.ok(frame.lines.includes('ExpectedResponse: '));
  assert.ok(frame.lines.includes('RemoteAddress: IPV4/UDP/198.18.0.11/5060'));
});

test('splitting asterisk-restart.ami at every byte boundary gives the same messages', () => {
  const bytes = amiBytes('asterisk-restart');
  const whole = raws([bytes], ANY);
  for (let i = 1; i < bytes.length; i++) {
    assert.deepEqual(raws([bytes.subarray(0, i), bytes.subarray(i)], ANY), whole, `split at byte ${i}`);
  }
});

test('random chunking of a recording gives the same messages (fast-check)', () => {
  const bytes = amiBytes('chansip-legit-phone');
  const whole = raws([bytes], ANY);
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 200 }), (cuts) => {
      const points = [0, ...cuts.sort((a, b) => a - b), bytes.length];
      assert.deepEqual(
        raws(
          points.slice(1).map((end, i) => bytes.subarray(points[i], end)),
          ANY,
        ),
        whole,
      );
    }),
    { numRuns: 300 },
  );
});

test('a UTF-8 character split across reads survives; invalid bytes become U+FFFD; NUL is kept', () => {
  const text = Buffer.from('Event: Test\r\nAccountID: Jürgen\u20ac\r\nNul: a\u0000b\r\n\r\n', 'utf8');
  const cut = text.indexOf(0xe2) + 1; // inside the three bytes of the euro sign
  const [frame] = readAll([text.subarray(0, cut), text.subarray(cut)]).frames;
  assert.equal(frame?.raw, 'Event: Test\r\nAccountID: Jürgen\u20ac\r\nNul: a\u0000b\r\n\r\n');
  const bad = Buffer.concat([Buffer.from('Event: Test\r\nAccountID: x'), Buffer.from([0xff, 0xc3]), Buffer.from('y\r\n\r\n')]);
  assert.equal(readAll([bad]).frames[0]?.raw, 'Event: Test\r\nAccountID: x\ufffd\ufffdy\r\n\r\n');
});

test('lines end at CRLF only: a bare LF or CR is data, so attacker text cannot end a line or a message with it', () => {
  const { frames } = readAll(['Event: A\r\nAccountID: \nRemoteAddress: IPV4/UDP/1.2.3.4/1\n\nEvent: x\r\nB: \r1\r\n\r\n']);
  assert.equal(frames.length, 1);
  assert.deepEqual(frames[0]!.lines, ['Event: A', 'AccountID: \nRemoteAddress: IPV4/UDP/1.2.3.4/1\n\nEvent: x', 'B: \r1']);
});

test('stray empty lines between messages are skipped; the greeting needs no empty line after it', () => {
  const { frames } = readAll(['Asterisk Call Manager/9.0.0\r\n\r\n\r\nEvent: A\r\nX: 1\r\n\r\n\r\nEvent: B\r\n\r\n']);
  assert.deepEqual(
    frames.map((f) => [f.banner, f.raw]),
    [
      [true, 'Asterisk Call Manager/9.0.0\r\n'],
      [false, 'Event: A\r\nX: 1\r\n\r\n'],
      [false, 'Event: B\r\n\r\n'],
    ],
  );
});

test('a greeting is one only as the first line of a connection (live), or anywhere a message starts (recordings)', () => {
  const stream = 'Asterisk Call Manager/9.0.0\r\nEvent: A\r\n\r\nAsterisk Call Manager/11.0.0\r\nEvent: B\r\n\r\n';
  assert.deepEqual(
    readAll([stream]).frames.map((f) => f.banner),
    [true, false, false],
  );
  assert.deepEqual(readAll([stream]).frames[2]!.lines, ['Asterisk Call Manager/11.0.0', 'Event: B']);
  assert.deepEqual(
    readAll([stream], ANY).frames.map((f) => f.banner),
    [true, false, true, false],
  );
  // reset() is a new connection: a greeting may come first again
  const seen: boolean[] = [];
  const reader = new AmiFrameReader((f) => seen.push(f.banner));
  reader.push(Buffer.from('Asterisk Call Manager/9.0.0\r\nEvent: A\r\n\r\nEvent: B\r\n'));
  reader.reset();
  reader.push(Buffer.from('Asterisk Call Manager/9.0.0\r\nEvent: C\r\n\r\n'));
  assert.deepEqual(seen, [true, false, true, false]);
  assert.equal(reader.bufferedBytes, 0);
});

test('a greeting split across reads completes at its own line end (the server says nothing more until we log in)', () => {
  const { frames } = readAll(['Asterisk Call Man', 'ager/11.0.0\r', '\n']);
  assert.deepEqual(
    frames.map((f) => [f.banner, f.raw]),
    [[true, 'Asterisk Call Manager/11.0.0\r\n']],
  );
});

function sized(size: number): string {
  const head = 'Event: Pad\r\n';
  let body = '';
  while (head.length + body.length + 2 < size) body += `P: ${'p'.repeat(Math.min(4000, size - head.length - body.length - 2 - 5))}\r\n`;
  const frame = head + body + '\r\n';
  assert.equal(frame.length, size);
  return frame;
}

test('a message of exactly MAX_FRAME_BYTES is kept; one byte more is dropped, counted, and the next one is read', () => {
  const next = 'Event: Next\r\n\r\n';
  for (const chunking of [1, 1000, 1 << 20]) {
    const input = Buffer.from(sized(MAX_FRAME_BYTES) + sized(MAX_FRAME_BYTES + 1) + next);
    const chunks = [];
    for (let i = 0; i < input.length; i += chunking) chunks.push(input.subarray(i, i + chunking));
    const { frames, reader } = readAll(chunks);
    assert.deepEqual(
      frames.map((f) => f.raw.length),
      [MAX_FRAME_BYTES, next.length],
      `chunks of ${chunking}`,
    );
    assert.equal(reader.stats.oversized, 1);
    assert.ok(reader.bufferedBytes === 0);
  }
});

test('a line over MAX_LINE_BYTES, or more than MAX_LINES lines, drops that message only', () => {
  const long = `Event: Long\r\nX: ${'x'.repeat(MAX_LINE_BYTES)}\r\nY: 1\r\n\r\n`;
  const many = `Event: Many\r\n${'L: 1\r\n'.repeat(MAX_LINES)}\r\n`;
  const fits = `Event: Fits\r\n${'L: 1\r\n'.repeat(MAX_LINES - 1)}\r\n`;
  for (const chunking of [7, 100_000]) {
    const input = Buffer.from(long + 'Event: A\r\n\r\n' + many + fits);
    const chunks = [];
    for (let i = 0; i < input.length; i += chunking) chunks.push(input.subarray(i, i + chunking));
    const { frames, reader } = readAll(chunks);
    assert.deepEqual(
      frames.map((f) => f.lines[0]),
      ['Event: A', 'Event: Fits'],
      `chunks of ${chunking}`,
    );
    assert.equal(reader.stats.oversized, 2);
  }
});

test('10 MB without a line end holds at most MAX_FRAME_BYTES, copies nothing once over, and reading recovers', () => {
  const seen: string[] = [];
  const reader = new AmiFrameReader((f) => seen.push(frameText(f)));
  const mb = Buffer.alloc(1024 * 1024, 0x41);
  for (let i = 0; i < 10; i++) {
    reader.push(mb);
    assert.ok(reader.bufferedBytes <= MAX_FRAME_BYTES);
  }
  assert.ok(reader.stats.copied <= 2 * MAX_FRAME_BYTES, `${reader.stats.copied} bytes copied`);
  // the junk is one line of a message: its own line end and empty line close the dropped message
  reader.push(Buffer.from('\r\n\r\nEvent: After\r\n\r\n'));
  assert.deepEqual(seen, ['Event: After\r\n\r\n']);
  assert.equal(reader.stats.oversized, 1);
});

test('a message fed one byte at a time costs copies linear in its size (no re-reading of what is held)', () => {
  const frame = Buffer.from(sized(MAX_FRAME_BYTES - 100));
  const { frames, reader } = readAll(Array.from(frame, (b) => Buffer.from([b])));
  assert.equal(frames.length, 1);
  assert.ok(reader.stats.copied <= 4 * frame.length, `${reader.stats.copied} bytes copied for a ${frame.length}-byte message`);
});

test('the empty line that ends a dropped message may be split across reads', () => {
  const { frames, reader } = readAll([
    'Event: Big\r\nX: ',
    'y'.repeat(MAX_LINE_BYTES + 10),
    '\r',
    '\n',
    '\r',
    '\n',
    'Event: Ok\r',
    '\n\r\n',
  ]);
  assert.deepEqual(
    frames.map((f) => f.raw),
    ['Event: Ok\r\n\r\n'],
  );
  assert.equal(reader.stats.oversized, 1);
});

test('random bytes in random reads never throw, never hold more than the bound, frames are well formed (fast-check)', () => {
  const byte = fc.oneof(fc.constantFrom(0x0a, 0x0d, 0x3a, 0x20, 0x00, 0x41, 0xff, 0xc3), fc.integer({ min: 0, max: 255 }));
  fc.assert(
    fc.property(fc.array(fc.array(byte, { maxLength: 300 }), { maxLength: 8 }), (chunks) => {
      const { frames, reader } = readAll(chunks.map((c) => Buffer.from(c)));
      for (const f of frames) {
        assert.ok(f.banner ? f.raw.endsWith('\r\n') : f.raw.endsWith('\r\n\r\n'));
        assert.ok(f.lines.every((l) => l.length > 0 && l.length <= MAX_LINE_BYTES + 1));
      }
      assert.ok(reader.bufferedBytes <= MAX_FRAME_BYTES);
    }),
    { numRuns: 3000 },
  );
});

test('any two chunkings of the same bytes give the same frames (fast-check)', () => {
  fc.assert(
    fc.property(
      fc.string({ unit: fc.constantFrom('\r', '\n', 'E', ':', ' ', 'A', 'x'), maxLength: 400 }),
      fc.integer({ min: 0, max: 400 }),
      (s, cut) => {
        const bytes = Buffer.from(s, 'latin1');
        assert.deepEqual(raws([bytes.subarray(0, cut), bytes.subarray(cut)]), raws([bytes]));
      },
    ),
    { numRuns: 2000 },
  );
});
