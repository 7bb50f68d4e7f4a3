import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AmiFrameReader } from '../../src/ami/frame-reader.js';
import { isRecordedReply } from '../../src/ami/message.js';
import { parseEventTime, readFrame, type FrameReading } from '../../src/events/normalise.js';
import { Intake, type IntakeBatch } from '../../src/events/intake.js';
import type { Injection, SecurityEvent } from '../../src/events/types.js';
import { injectedEvent, pjsipEvent } from '../support/ami-events.js';

const FIXTURES = 'test/fixtures/ami';
const scenarios = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.truth.json'))
  .map((f) => f.replace('.truth.json', ''));

interface Truth {
  sources: Array<{ ip: string; ami_events: Record<string, number>; injections?: number }>;
  forged?: string[];
}

/**
 * Bytes through the frame reader into an Intake, as the AMI client feeds it (every reply reaching the intake is
 * forged: the client keeps its own), or as a replay of a recording does (the recorder's replies are genuine). The
 * stream's end closes what is open.
 */
function intake(...chunks: Array<string | Buffer>): { events: SecurityEvent[]; injections: Injection[]; intake: Intake } {
  return feed(false, chunks);
}

function recording(bytes: Buffer): ReturnType<typeof intake> {
  return feed(true, [bytes]);
}

function feed(repliesAreGenuine: boolean, chunks: Array<string | Buffer>): ReturnType<typeof intake> {
  const batches: IntakeBatch[] = [];
  const i = new Intake((b) => batches.push(b));
  const reader = new AmiFrameReader((f) => (repliesAreGenuine && isRecordedReply(f) ? i.boundary() : i.frame(f, 1000)), { banner: 'any' });
  for (const c of chunks) {
    reader.push(typeof c === 'string' ? Buffer.from(c, 'utf8') : c);
    i.flush();
  }
  i.reset();
  return { events: batches.flatMap((b) => b.events), injections: batches.flatMap((b) => b.injections), intake: i };
}

function reading(raw: string): FrameReading {
  let r: FrameReading | undefined;
  new AmiFrameReader((f) => (r ??= readFrame(f, 0))).push(Buffer.from(raw, 'utf8'));
  assert.ok(r, 'no frame');
  return r;
}

test('there are recordings to test against', () => {
  assert.ok(scenarios.length >= 10, `only ${scenarios.length} recordings in ${FIXTURES}`);
});

for (const s of scenarios) {
  test(`${s}: every security event is read with the address and kind the ground truth gives, every injection with its genuine source`, () => {
    const truth = JSON.parse(readFileSync(join(FIXTURES, `${s}.truth.json`), 'utf8')) as Truth;
    const { events, injections, intake: i } = recording(readFileSync(join(FIXTURES, `${s}.ami`)));
    const seen = new Map<string, Record<string, number>>();
    for (const e of events) {
      const per = seen.get(e.address.text) ?? {};
      per[e.kind] = (per[e.kind] ?? 0) + 1;
      seen.set(e.address.text, per);
      assert.ok(['PJSIP', 'SIP', 'AMI'].includes(e.service), e.service);
      assert.ok(e.eventTime !== null && e.eventTime > Date.UTC(2026, 0, 1));
    }
    // injections by genuine source, exactly as the ground truth sent them (none in a recording of plain attacks)
    const bySource = new Map<string, number>();
    for (const x of injections) bySource.set(x.source?.text ?? 'unknown', (bySource.get(x.source?.text ?? 'unknown') ?? 0) + 1);
    assert.deepEqual(
      new Map([...bySource].sort()),
      new Map(
        truth.sources
          .filter((src) => src.injections)
          .map((src) => [src.ip, src.injections!] as [string, number])
          .sort(),
      ),
    );
    for (const forged of truth.forged ?? []) assert.ok(!seen.has(forged), `${forged} was read as a source`);
    assert.deepEqual(i.counters.invalid, { 'bad-kind': 0, 'bad-address': 0, 'bad-value': 0 });
    const expected = new Map(truth.sources.map((src) => [src.ip, src.ami_events]));
    assert.deepEqual(new Map([...seen].sort()), new Map([...expected].filter(([, e]) => Object.keys(e).length).sort()));
  });
}

test('pjsip ChallengeResponseFailed with its Response: header is an event, not an action reply', () => {
  const r = reading(pjsipEvent('ChallengeResponseFailed', { remote: '198.18.0.13' }));
  assert.equal(r.type, 'event');
  assert.ok(r.type === 'event');
  assert.equal(r.event.kind, 'ChallengeResponseFailed');
  assert.equal(r.event.address.text, '198.18.0.13');
  assert.equal(r.event.eventTime, Date.parse('2026-11-21T19:15:48.554Z'));
});

test('an address that does not parse makes the event invalid, never an event', () => {
  for (const remote of [
    'IPV4/UDP/999.1.1.1/5060',
    'IPV4/UDP/198.18.0.11; flush ruleset/5060',
    'garbage',
    '',
    'ipv4/UDP/198.18.0.11/5060',
    'IPV4/UDP/198.18.0.11/',
    'IPV4/U-P/198.18.0.11/5060',
    'IPV4/UDP/fd00::66/5060',
  ]) {
    const raw = pjsipEvent('InvalidAccountID', {}).replace('RemoteAddress: IPV4/UDP/198.18.0.11/5060', `RemoteAddress: ${remote}`);
    assert.deepEqual(reading(raw), { type: 'invalid', kind: 'InvalidAccountID', reason: 'bad-address' }, remote);
  }
});

test('action replies and system events are told apart from security events', () => {
  assert.equal(reading('Response: Success\r\nActionID: 1\r\nPing: Pong\r\n\r\n').type, 'response');
  assert.deepEqual(reading('Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1\r\n\r\n'), { type: 'system', name: 'FullyBooted' });
  // two UserEvent lines killed asterisk-manager (toLowerCase of an array); here it is just a system event
  assert.deepEqual(reading('Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: a\r\nUserEvent: b\r\n\r\n'), {
    type: 'system',
    name: 'UserEvent',
  });
  assert.equal(reading('Event: rawevent\r\nSessionID: x\r\n\r\n').type, 'fragment');
});

test('attacker-controlled AccountID is kept as short printable data', () => {
  const r = reading(pjsipEvent('InvalidAccountID', { account: `6001"; flush ruleset; "\u0000\u001b[31m${'x'.repeat(500)}` }));
  assert.ok(r.type === 'event');
  assert.ok(r.event.accountId.startsWith('6001"; flush ruleset; "??[31m'));
  assert.ok(r.event.accountId.length <= 65);
});

test('EventTV parsing', () => {
  assert.equal(parseEventTime('2026-11-21T19:15:48.554+0000'), Date.parse('2026-11-21T19:15:48.554Z'));
  assert.equal(parseEventTime('2026-11-21T20:15:48.554+0100'), Date.parse('2026-11-21T19:15:48.554Z'));
  assert.equal(parseEventTime('1970-01-01T00:00:00.000+0000'), 0);
  assert.equal(parseEventTime('yesterday'), null);
  assert.equal(parseEventTime(undefined), null);
});

// ---- injections: the bytes pjsip writes when the SIP From user carries %0D%0A ----

const GENUINE = '198.18.0.11';

test('a forged RemoteAddress line (CR LF in AccountID) is never read; the genuine source is reported', () => {
  const { events, injections } = intake(injectedEvent('\r\nRemoteAddress: IPV4/203.0.113.99/'));
  assert.deepEqual(events, []);
  assert.equal(injections.length, 1);
  assert.equal(injections[0]!.source?.text, GENUINE);
  assert.equal(injections[0]!.sign, 'repeated-header');
  assert.equal(injections[0]!.kind, 'InvalidAccountID');
});

test('an injected empty line splits the event: the head is cut short, the genuine tail arrives as a fragment', () => {
  for (const payload of [
    '\r\n\r\nEvent: rawevent',
    '\r\n\r\nResponse: Follows',
    '\r\n\r\nEvent: close',
    '\r\n\r\n',
    '\r\n\r\nRemoteAddress: IPV4/UDP/10.9.9.9/1\r\n\r\n',
    '\r\n\r\nEvent: X\r\nPrivilege: security,all',
  ]) {
    const { events, injections } = intake(injectedEvent(payload), pjsipEvent('ChallengeSent', { remote: '198.18.0.50' }));
    assert.deepEqual(
      injections.map((i) => [i.source?.text, i.sign]),
      [[GENUINE, 'cut-short']],
      JSON.stringify(payload),
    );
    // the next genuine event is read as usual
    assert.deepEqual(
      events.map((e) => e.address.text),
      ['198.18.0.50'],
      JSON.stringify(payload),
    );
  }
});

test('split across reads at every byte, the split-frame injection still names the genuine source', () => {
  const bytes = Buffer.from(
    injectedEvent('\r\n\r\nRemoteAddress: IPV4/UDP/10.9.9.9/1\r\n\r\nEvent: x') + pjsipEvent('ChallengeSent', {}),
    'utf8',
  );
  for (let cut = 1; cut < bytes.length; cut++) {
    const { injections } = intake(bytes.subarray(0, cut), bytes.subarray(cut));
    assert.deepEqual(
      injections.map((i) => i.source?.text),
      [GENUINE],
      `cut at ${cut}`,
    );
  }
});

test('an episode stays open until Asterisk speaks again: a reply to our Ping, the next event, or the end', () => {
  const batches: IntakeBatch[] = [];
  const i = new Intake((b) => batches.push(b));
  const reader = new AmiFrameReader((f) => i.frame(f, 1));
  reader.push(Buffer.from(injectedEvent('\r\n\r\nEvent: a'), 'utf8'));
  i.flush();
  assert.equal(i.awaitingBoundary, true);
  assert.equal(batches.length, 0, 'nothing is decided before the episode closes');
  i.boundary(); // the client got the reply to its Ping
  i.flush();
  assert.equal(i.awaitingBoundary, false);
  assert.deepEqual(
    batches.flatMap((b) => b.injections).map((x) => x.source?.text),
    [GENUINE],
  );
});

test('a bare LF or CR in AccountID does not split a line, and still counts as an attempt with a known source', () => {
  for (const payload of ['\nRemoteAddress: IPV4/203.0.113.99/', '\rEvent: x', '\n\nEvent: rawevent']) {
    const { events, injections } = intake(injectedEvent(payload));
    assert.deepEqual(events, []);
    assert.deepEqual(
      injections.map((i) => [i.source?.text, i.sign]),
      [[GENUINE, 'control-characters']],
      JSON.stringify(payload),
    );
  }
});

test('header names of Object.prototype are only foreign lines', () => {
  const { events, injections } = intake(injectedEvent('\r\n__proto__: x\r\nconstructor: y'));
  assert.deepEqual(events, []);
  assert.deepEqual(
    injections.map((i) => [i.source?.text, i.sign]),
    [[GENUINE, 'foreign-line']],
  );
});

test('RequestBadFormat writes AccountID after the address lines: there the first address run is the genuine one', () => {
  const raw =
    'Event: RequestBadFormat\r\nPrivilege: security,all\r\nEventTV: 2026-11-21T19:15:48.554+0000\r\nSeverity: Error\r\n' +
    'Service: PJSIP\r\nEventVersion: 2\r\nSessionID: c1\r\nLocalAddress: IPV4/UDP/198.18.0.1/5060\r\n' +
    `RemoteAddress: IPV4/UDP/${GENUINE}/5060\r\nRequestType: REGISTER\r\n` +
    'AccountID: \r\nSessionID: x\r\nLocalAddress: IPV4/UDP/198.18.0.1/5060\r\nRemoteAddress: IPV4/UDP/203.0.113.99/5060\r\n\r\n';
  const { events, injections } = intake(raw);
  assert.deepEqual(events, []);
  assert.deepEqual(
    injections.map((i) => i.source?.text),
    [GENUINE],
  );
});

test('an injection in a trailing value splits off a fragment: it is blamed on the event before it', () => {
  const raw =
    'Event: RequestBadFormat\r\nPrivilege: security,all\r\nEventTV: 2026-11-21T19:15:48.554+0000\r\nSeverity: Error\r\n' +
    'Service: PJSIP\r\nEventVersion: 2\r\nSessionID: c1\r\nLocalAddress: IPV4/UDP/198.18.0.1/5060\r\n' +
    `RemoteAddress: IPV4/UDP/${GENUINE}/5060\r\nRequestType: REGISTER\r\nAccountID: \r\n\r\nEvent: forged\r\nRequestParams: x\r\n\r\n`;
  const { events, injections } = intake(raw);
  assert.deepEqual(
    events.map((e) => e.address.text),
    [GENUINE],
  );
  assert.deepEqual(
    injections.map((i) => [i.source?.text, i.sign]),
    [[GENUINE, 'fragment']],
  );
});

test('a kind Asterisk does not have yet is read with the common headers; unknown names never become more than data', () => {
  const raw = pjsipEvent('InvalidAccountID', {})
    .replace('Event: InvalidAccountID', 'Event: BrandNewKind')
    .replace('\r\n\r\n', '\r\nNewField: 1\r\n\r\n');
  const r = reading(raw);
  assert.ok(r.type === 'event');
  assert.equal(r.event.kind, 'BrandNewKind');
  // but its known headers still have their places
  assert.equal(reading(raw.replace('NewField: 1', 'RemoteAddress: IPV4/UDP/10.0.0.1/1')).type, 'broken');
});
