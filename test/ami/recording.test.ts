import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRecording, parseAmiRecording, parseJsonlRecording, readRecording } from '../../src/ami/recording.js';
import { lineText } from '../../src/ami/frame-reader.js';
import { SCENARIOS, eventRecords, fixturePath, jsonlRecords } from './fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'ami-recording-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

for (const s of SCENARIOS) {
  test(`${s}: .jsonl and .ami load to the same messages and connections`, async () => {
    const fromJsonl = await loadRecording(fixturePath(s, 'jsonl'));
    const fromAmi = await loadRecording(fixturePath(s, 'ami'));
    const expected = jsonlRecords(s);
    assert.deepEqual(
      fromJsonl.records.map((r) => [r.tMs, r.conn, r.raw]),
      expected.map((r) => [r.t_ms, r.conn, r.raw]),
    );
    assert.deepEqual(
      fromAmi.records.map((r) => [r.conn, r.raw]),
      expected.map((r) => [r.conn, r.raw]),
    );
    assert.deepEqual(
      fromAmi.records.map((r) => r.headers),
      fromJsonl.records.map((r) => r.headers),
    );
    assert.match(fromJsonl.banner ?? '', /^Asterisk Call Manager\/\d+\.\d+\.\d+$/);
    assert.equal(fromAmi.banner, fromJsonl.banner);
    assert.deepEqual(fromAmi.dropped, { oversized: 0, trailingBytes: 0 });
  });
}

test('readRecording visits every Event record, from .jsonl and from .ami', async () => {
  for (const s of ['register-bruteforce', 'asterisk-restart']) {
    const expected = eventRecords(s).map((r) => r.raw.split('\r\n')[0]!.slice('Event: '.length));
    for (const ext of ['jsonl', 'ami'] as const) {
      const names: string[] = [];
      await readRecording(fixturePath(s, ext), (f) => {
        const first = f.banner ? '' : lineText(f, 0);
        if (first.startsWith('Event: ')) names.push(first.slice('Event: '.length));
      });
      assert.deepEqual(names, expected, `${s}.${ext}`);
    }
  }
});

test('a malformed .jsonl line is reported with its file and line number', () => {
  const good = JSON.stringify({ t_ms: 1, conn: 1, raw: 'Event: A\r\n\r\n' });
  const cases: Array<[string, RegExp]> = [
    ['{"t_ms": 1, "conn": 1', /f\.jsonl:2: not JSON/],
    ['[1,2]', /f\.jsonl:2: expected an object/],
    ['{"t_ms": -1, "conn": 1, "raw": "Event: A\\r\\n\\r\\n"}', /f\.jsonl:2: t_ms/],
    ['{"t_ms": 1, "conn": 0, "raw": "Event: A\\r\\n\\r\\n"}', /f\.jsonl:2: conn/],
    ['{"t_ms": 1, "conn": 1, "raw": 7}', /f\.jsonl:2: raw must be a non-empty string/],
    ['{"t_ms": 1, "conn": 1, "raw": "Event: A\\r\\n"}', /f\.jsonl:2: raw must hold exactly one complete AMI message/],
    ['{"t_ms": 1, "conn": 1, "raw": "Event: A\\r\\n\\r\\nEvent: B\\r\\n\\r\\n"}', /f\.jsonl:2: raw must hold exactly one/],
  ];
  for (const [bad, message] of cases) {
    assert.throws(() => parseJsonlRecording(`${good}\n${bad}\n`, 'f.jsonl'), message, bad);
  }
});

test('readRecording reports a malformed line too, after visiting what came before', async () => {
  const path = join(tmp, 'bad.jsonl');
  writeFileSync(path, `${JSON.stringify({ t_ms: 1, conn: 1, raw: 'Event: A\r\n\r\n' })}\nnot json\n`);
  const seen: string[] = [];
  await assert.rejects(
    readRecording(path, (f) => seen.push(lineText(f, 0).slice('Event: '.length))),
    /bad\.jsonl:2: not JSON/,
  );
  assert.deepEqual(seen, ['A']);
});

test('.ami: each banner after the first starts a new connection; an unfinished tail is counted', () => {
  const rec = parseAmiRecording(
    'Asterisk Call Manager/11.0.0\r\nEvent: A\r\n\r\nAsterisk Call Manager/11.0.0\r\nEvent: B\r\n\r\nEvent: C\r\nPart',
  );
  assert.deepEqual(
    rec.records.map((r) => [r.conn, r.banner, r.headers.get('event')?.[0] ?? null]),
    [
      [1, true, null],
      [1, false, 'A'],
      [2, true, null],
      [2, false, 'B'],
    ],
  );
  assert.deepEqual(rec.dropped, { oversized: 0, trailingBytes: 'Event: C\r\nPart'.length });
});

test('an unknown extension is refused by name', async () => {
  await assert.rejects(loadRecording('capture.pcap'), /capture\.pcap: unknown recording type/);
});
