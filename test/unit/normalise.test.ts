import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRecording } from '../../src/ami/recording.js';
import { normalise, parseEventTime } from '../../src/events/normalise.js';
import { parseHeaderBlock } from '../../src/ami/frame-reader.js';

const FIXTURES = 'test/fixtures/ami';
const scenarios = readdirSync(FIXTURES).filter((f) => f.endsWith('.truth.json')).map((f) => f.replace('.truth.json', ''));

interface Truth {
  sources: Array<{ ip: string; ami_events: Record<string, number> }>;
}

test('there are recordings to test against', () => {
  assert.ok(scenarios.length >= 10, `only ${scenarios.length} recordings in ${FIXTURES}`);
});

for (const s of scenarios) {
  test(`${s}: every security event is normalised with the address and kind the ground truth gives`, async () => {
    const truth = JSON.parse(readFileSync(join(FIXTURES, `${s}.truth.json`), 'utf8')) as Truth;
    const rec = await loadRecording(join(FIXTURES, `${s}.ami`));
    const seen = new Map<string, Record<string, number>>();
    let invalid = 0;
    for (const r of rec.records) {
      if (r.banner) continue;
      const res = normalise(r.headers, 0);
      if (!res.ok) {
        if (res.reason !== 'not-event' && res.reason !== 'not-security') invalid++;
        continue;
      }
      const per = seen.get(res.event.address.text) ?? {};
      per[res.event.kind] = (per[res.event.kind] ?? 0) + 1;
      seen.set(res.event.address.text, per);
      assert.ok(['PJSIP', 'SIP', 'AMI'].includes(res.event.service), res.event.service);
      assert.ok(res.event.eventTime !== null && res.event.eventTime > Date.UTC(2026, 0, 1));
    }
    assert.equal(invalid, 0);
    const expected = new Map(truth.sources.map((src) => [src.ip, src.ami_events]));
    assert.deepEqual(new Map([...seen].sort()), new Map([...expected].filter(([, e]) => Object.keys(e).length).sort()));
  });
}

test('pjsip ChallengeResponseFailed with its Response: header is an event', () => {
  const raw = 'Event: ChallengeResponseFailed\r\nPrivilege: security,all\r\nEventTV: 2026-11-21T19:15:48.554+0000\r\nSeverity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\nAccountID: <unknown>\r\nSessionID: 1-4574@198.18.0.13\r\nLocalAddress: IPV4/UDP/198.18.0.1/5060\r\nRemoteAddress: IPV4/UDP/198.18.0.13/5060\r\nChallenge: 1795288548/4ac4\r\nResponse: 75279d66fe34f244c2f9d576db4fb5c9\r\nExpectedResponse: \r\n\r\n';
  const res = normalise(parseHeaderBlock(raw), 0);
  assert.ok(res.ok);
  assert.equal(res.event.kind, 'ChallengeResponseFailed');
  assert.equal(res.event.address.text, '198.18.0.13');
  assert.equal(res.event.eventTime, Date.parse('2026-11-21T19:15:48.554Z'));
});

test('missing or bogus addresses are reported, never events', () => {
  const base = 'Event: InvalidPassword\r\nPrivilege: security,all\r\nService: SIP\r\nAccountID: 6001\r\n';
  const cases: Array<[string, string]> = [
    ['', 'no-address'],
    ['RemoteAddress: \r\n', 'no-address'],
    ['RemoteAddress: IPV4/UDP/999.1.1.1/5060\r\n', 'bad-address'],
    ['RemoteAddress: IPV4/UDP/198.18.0.11; flush ruleset/5060\r\n', 'bad-address'],
    ['RemoteAddress: garbage\r\n', 'bad-address'],
  ];
  for (const [extra, reason] of cases) {
    const res = normalise(parseHeaderBlock(`${base}${extra}\r\n`), 0);
    assert.ok(!res.ok);
    assert.equal(res.reason, reason, extra);
  }
  // action replies and system events are not security events
  assert.deepEqual(normalise(parseHeaderBlock('Response: Success\r\nActionID: 1\r\nPing: Pong\r\n\r\n'), 0), { ok: false, reason: 'not-event' });
  assert.deepEqual(normalise(parseHeaderBlock('Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1\r\n\r\n'), 0), { ok: false, reason: 'not-security' });
});

test('attacker-controlled AccountID is kept as short printable data', () => {
  const raw = `Event: InvalidAccountID\r\nPrivilege: security,all\r\nService: PJSIP\r\nAccountID: 6001"; flush ruleset; "\u0000\u001b[31m${'x'.repeat(500)}\r\nRemoteAddress: IPV4/UDP/198.18.0.11/5060\r\n\r\n`;
  const res = normalise(parseHeaderBlock(raw), 0);
  assert.ok(res.ok);
  assert.ok(res.event.accountId.startsWith('6001"; flush ruleset; "??[31m'));
  assert.ok(res.event.accountId.length <= 65);
});

test('EventTV parsing', () => {
  assert.equal(parseEventTime('2026-11-21T19:15:48.554+0000'), Date.parse('2026-11-21T19:15:48.554Z'));
  assert.equal(parseEventTime('2026-11-21T20:15:48.554+0100'), Date.parse('2026-11-21T19:15:48.554Z'));
  assert.equal(parseEventTime('1970-01-01T00:00:00.000+0000'), 0);
  assert.equal(parseEventTime('yesterday'), null);
  assert.equal(parseEventTime(undefined), null);
});

test('an event bigger than any real one is dropped whole', () => {
  const raw = `Event: InvalidPassword\r\nPrivilege: security,all\r\nService: SIP\r\nAccountID: ${'x'.repeat(70 * 1024)}\r\nRemoteAddress: IPV4/UDP/198.18.0.11/5060\r\n\r\n`;
  assert.deepEqual(normalise(parseHeaderBlock(raw), 0), { ok: false, reason: 'oversized', kind: 'InvalidPassword' });
});
