import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../src/log.js';
import { frameText, type FrameView } from '../../src/ami/frame-reader.js';
import { header, type Headers } from '../../src/ami/message.js';
import { AmiClient, EVENT_MASK, type AmiClientOptions, type AuthFailedInfo, type DisconnectedInfo } from '../../src/ami/client.js';
import type { FrameSink } from '../../src/events/intake.js';
import { startReplayServer, type ReplayServer, type ReplayServerOptions } from '../support/replay-ami-server.js';
import { eventRecords, fixturePath } from './fixtures.js';
import { waitFor } from './wait.js';

const USER = 'amiguard';
const SECRET = 'Sup3r-Secret-of-the-PBX';
const WRONG = 'Wr0ng-Secret-typed-by-ops';

const servers: ReplayServer[] = [];
const supervisors: AmiClient[] = [];
const allLogLines: string[] = [];
after(async () => {
  await Promise.all(supervisors.map((s) => s.stop()));
  await Promise.all(servers.map((s) => s.stop()));
});

async function server(scenario: string, options: Partial<ReplayServerOptions> = {}): Promise<ReplayServer> {
  const s = await startReplayServer({
    recording: fixturePath(scenario, 'jsonl'),
    username: USER,
    secret: SECRET,
    speed: Infinity,
    ...options,
  });
  servers.push(s);
  return s;
}

/** Keeps what the client hands over: each message's text, and the reads that ended. */
class KeepingSink implements FrameSink {
  readonly messages: string[] = [];
  flushes = 0;
  resets = 0;
  boundaries = 0;
  awaitingBoundary = false;
  /** a sink that throws on the first message it gets, like a buggy consumer */
  throwOnce = false;
  frame(f: FrameView): void {
    if (this.throwOnce) {
      this.throwOnce = false;
      throw new Error('sink bug');
    }
    this.messages.push(frameText(f));
  }
  boundary(): void {
    this.boundaries++;
  }
  flush(): void {
    this.flushes++;
  }
  reset(): void {
    this.resets++;
  }
}

interface Supervised {
  sup: AmiClient;
  sink: KeepingSink;
  messages: string[];
  /** every log line as parsed JSON */
  logs: Array<{ level: number; msg: string } & Record<string, unknown>>;
}

function supervise(port: number, options: Partial<AmiClientOptions> = {}): Supervised {
  const logs: Supervised['logs'] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) {
        if (!line) continue;
        allLogLines.push(line);
        logs.push(JSON.parse(line) as Supervised['logs'][number]);
      }
      done();
    },
  });
  const sink = new KeepingSink();
  const sup = new AmiClient({
    host: '127.0.0.1',
    port,
    username: USER,
    secret: SECRET,
    sink,
    logger: createLogger('debug', stream),
    ...options,
  });
  supervisors.push(sup);
  return { sup, sink, messages: sink.messages, logs };
}

for (const scenario of ['register-bruteforce', 'acl-violation']) {
  test(`${scenario}: every event arrives in order, exactly as recorded, ChallengeResponseFailed included`, async () => {
    const s = await server(scenario);
    const actions: Headers[] = [];
    s.on('action', (h) => actions.push(h));
    const { sup, messages, sink } = supervise(s.port);
    const expected = eventRecords(scenario).map((r) => r.raw);
    sup.start();
    await s.playDone;
    await waitFor(() => messages.length >= expected.length, 5000, `${expected.length} events`);
    await sleep(50); // nothing extra may follow
    assert.equal(messages.length, expected.length);
    assert.deepEqual(messages, expected);
    const crf = messages.filter((m) => m.startsWith('Event: ChallengeResponseFailed\r\n'));
    assert.ok(crf.length >= 50, `${crf.length} ChallengeResponseFailed`);
    assert.ok(crf.every((m) => /\r\nResponse: [0-9a-f]{32}\r\n/.test(m)));
    // one Login carrying the event mask (Asterisk's authenticate() reads `Events:`), with a random ActionID
    assert.equal(header(actions[0]!, 'action'), 'Login');
    assert.equal(header(actions[0]!, 'events'), EVENT_MASK);
    assert.match(header(actions[0]!, 'actionid'), /^[0-9a-f]{24}$/);
    assert.equal(sup.stats.connects, 1);
    assert.ok(sink.flushes >= 1 && sink.flushes <= messages.length, `one flush per read: ${sink.flushes}`);
  });
}

test('after drop() the first reconnect attempt comes within 250 ms; gaps are counted', async (t) => {
  const s = await server('legit-phone');
  const connections: number[] = [];
  s.on('connection', (c) => connections.push(c.at));
  // resetAfterMs 0: every drop starts a fresh backoff sequence, as after a long healthy connection.
  const { sup } = supervise(s.port, { backoff: { resetAfterMs: 0 } });
  const disconnected: DisconnectedInfo[] = [];
  const gaps: number[] = [];
  sup.on('disconnected', (d) => disconnected.push(d));
  sup.on('reconnected', (gapMs) => gaps.push(gapMs));
  sup.start();
  const delays: number[] = [];
  for (let i = 0; i < 5; i++) {
    await waitFor(() => sup.stats.connected, 2000, 'connected');
    const before = connections.length;
    const droppedAt = performance.now();
    s.drop();
    await waitFor(() => connections.length > before, 2000, 'a new connection');
    delays.push(connections[before]! - droppedAt);
  }
  await waitFor(() => sup.stats.reconnects === 5, 2000, '5 reconnects');
  t.diagnostic(`drop → next connection: ${delays.map((d) => d.toFixed(0)).join(', ')} ms; gaps ${gaps.join(', ')} ms`);
  assert.ok(Math.max(...delays) < 1000, `reconnect delays ${delays.join(', ')}`);
  assert.ok(delays.filter((d) => d <= 300).length >= 4, `most reconnects within 250 ms (+ scheduling): ${delays.join(', ')}`);
  assert.deepEqual(
    disconnected.map((d) => d.reason),
    ['closed', 'closed', 'closed', 'closed', 'closed'],
  );
  assert.ok(disconnected.every((d) => Math.abs(d.gapStartedAt - Date.now()) < 60_000));
  const stats = sup.stats;
  assert.equal(stats.connects, 6);
  assert.equal(gaps.length, 5);
  assert.equal(stats.lastGapMs, gaps.at(-1));
  assert.equal(
    stats.totalGapMs,
    gaps.reduce((a, b) => a + b, 0),
  );
  // A gap runs from the last message seen to the next login: positive, and short here.
  assert.ok(
    gaps.every((g) => g >= 0 && g < 1000),
    `gaps ${gaps.join(', ')}`,
  );
});

test('a wrong secret: auth-failed each time, one error log line without the secret, retries at the cap, recovery logged', async () => {
  const s = await server('legit-phone', { secret: 'the-server-wants-something-else' });
  const { sup, logs, messages } = supervise(s.port, { secret: WRONG, backoff: { initialMs: 10, maxMs: 60 } });
  const failures: AuthFailedInfo[] = [];
  sup.on('auth-failed', (f) => failures.push(f));
  const attempts: number[] = [];
  s.on('connection', (c) => attempts.push(c.at));
  sup.start();
  await waitFor(() => failures.length >= 4, 3000, '4 rejected logins');
  const errors = logs.filter((l) => l.level >= 50);
  assert.equal(errors.length, 1, JSON.stringify(errors));
  assert.match(errors[0]!.msg, /user amiguard at 127\.0\.0\.1:\d+/);
  assert.deepEqual(failures[0], { username: USER, host: '127.0.0.1', port: s.port, message: 'Authentication failed' });
  assert.equal(sup.stats.authFailures, failures.length);
  assert.equal(sup.stats.connected, false);
  // Retries wait maxMs, not the short initial delay.
  const spacing = attempts.slice(1).map((a, i) => a - attempts[i]!);
  assert.ok(
    spacing.every((d) => d >= 50),
    `attempt spacing ${spacing.join(', ')}`,
  );

  s.setCredentials(USER, WRONG); // ops fix manager.conf
  await waitFor(() => sup.stats.connected, 2000, 'login with the now-right secret');
  await waitFor(() => messages.length > 0, 2000, 'events after recovery');
  assert.ok(logs.some((l) => l.msg === 'AMI login accepted again'));
  assert.equal(logs.filter((l) => l.level >= 50).length, 1);
  for (const text of [JSON.stringify(logs), JSON.stringify(failures)]) {
    assert.ok(!text.includes(WRONG) && !text.includes(SECRET), 'a secret leaked');
  }
});

test('no Ping reply: torn down within pingInterval + pingTimeout, then reconnected', async (t) => {
  const s = await server('legit-phone');
  const { sup } = supervise(s.port, { pingIntervalMs: 200, pingTimeoutMs: 200 });
  const disconnected: Array<DisconnectedInfo & { at: number }> = [];
  sup.on('disconnected', (d) => disconnected.push({ ...d, at: performance.now() }));
  sup.start();
  await waitFor(() => sup.stats.connected, 2000, 'connected');
  await sleep(500); // a few answered Pings first
  assert.equal(sup.stats.pingTimeouts, 0);

  const connectionsBefore = s.connections;
  const silencedAt = performance.now();
  s.setPingResponses(false);
  await waitFor(() => disconnected.length > 0, 2000, 'teardown');
  const tornDownAfter = disconnected[0]!.at - silencedAt;
  assert.equal(disconnected[0]!.reason, 'ping-timeout');
  assert.ok(tornDownAfter <= 200 + 200 + 100, `torn down ${tornDownAfter} ms after Pings stopped`);
  s.setPingResponses(true);
  await waitFor(() => s.connections > connectionsBefore && sup.stats.connected, 2000, 'reconnected');
  t.diagnostic(`teardown ${tornDownAfter.toFixed(0)} ms after Pings went unanswered (interval 200, timeout 200)`);

  const timeouts = sup.stats.pingTimeouts;
  assert.ok(timeouts >= 1);
  await sleep(700); // answered again: no further timeouts
  assert.equal(sup.stats.pingTimeouts, timeouts);
  assert.equal(sup.stats.connected, true);
  assert.ok(sup.stats.reconnects >= 1);
});

test('a busy connection is alive: events arriving while the Pong queues behind them keep it up', async () => {
  const s = await server('legit-phone');
  const { sup, messages } = supervise(s.port, { pingIntervalMs: 100, pingTimeoutMs: 100 });
  const disconnected: DisconnectedInfo[] = [];
  sup.on('disconnected', (d) => disconnected.push(d));
  sup.start();
  await waitFor(() => sup.stats.connected, 2000, 'connected');
  await s.playDone;
  // Pongs held back (as behind a flood), events flowing: the session is alive and must not be dropped
  s.setPingResponses(false);
  const event = 'Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1\r\nLastReload: 1\r\nStatus: Fully Booted\r\n\r\n';
  const before = messages.length;
  for (let i = 0; i < 20; i++) {
    s.inject(event);
    await sleep(40);
  }
  await waitFor(() => messages.length >= before + 20, 2000, 'the injected events');
  assert.equal(disconnected.length, 0, 'dropped while events were arriving');
  // the flood stops and Pings stay unanswered: now it is dead
  await waitFor(() => disconnected.length > 0, 2000, 'teardown once events stop');
  assert.equal(disconnected[0]!.reason, 'ping-timeout');
  s.setPingResponses(true);
});

test("asterisk-restart: both connections' events arrive and the reconnect happens by itself", async () => {
  const s = await server('asterisk-restart', { speed: 10 });
  const { sup, messages } = supervise(s.port);
  const disconnected: DisconnectedInfo[] = [];
  sup.on('disconnected', (d) => disconnected.push(d));
  const expected = eventRecords('asterisk-restart').map((r) => r.raw);
  sup.start();
  await s.playDone;
  await waitFor(() => messages.length >= expected.length, 3000, `${expected.length} events`);
  assert.deepEqual(messages, expected);
  assert.deepEqual(
    messages.map((m) => m.split('\r\n')[0]).filter((e) => e === 'Event: FullyBooted' || e === 'Event: Shutdown'),
    ['Event: FullyBooted', 'Event: Shutdown', 'Event: FullyBooted'],
  );
  assert.deepEqual(
    disconnected.map((d) => d.reason),
    ['closed'],
  );
  assert.equal(sup.stats.reconnects, 1);
  assert.equal(s.connections, 2);
  assert.ok((sup.stats.lastGapMs ?? Infinity) < 1000, `gap ${sup.stats.lastGapMs} ms`);
});

test('the PBX is down at start: attempts back off, one warning, and it connects when the PBX comes up', async () => {
  const probe = await server('legit-phone');
  const port = probe.port;
  await probe.stop();
  const { sup, logs } = supervise(port, { backoff: { initialMs: 20, maxMs: 100 } });
  sup.start();
  await sleep(400);
  assert.equal(sup.stats.connected, false);
  const warnings = logs.filter((l) => l.msg.startsWith('AMI connection attempt failed'));
  assert.equal(warnings.filter((l) => l.level === 40).length, 1);
  assert.ok(warnings.length >= 3, `${warnings.length} failed attempts logged`);
  assert.match(String(warnings[0]!['error']), /ECONNREFUSED/);

  const s = await server('legit-phone', { port });
  await waitFor(() => sup.stats.connected, 2000, 'connected once the PBX is up');
  assert.equal(s.logins, 1);
  assert.equal(sup.stats.reconnects, 0, 'never having been connected is not a gap');
});

test('Asterisk down for longer than the backoff: the login follows the port answering again, not the backoff', async (t) => {
  const first = await server('legit-phone');
  const port = first.port;
  // a backoff this long would not reconnect within the wait below: only the port watch can
  const { sup, logs } = supervise(port, { backoff: { initialMs: 60_000, maxMs: 60_000 } });
  const disconnected: DisconnectedInfo[] = [];
  sup.on('disconnected', (d) => disconnected.push(d));
  sup.start();
  await waitFor(() => sup.stats.connected, 2000, 'connected');
  await first.stop();
  await waitFor(() => disconnected.length === 1, 2000, 'the loss noticed');
  await sleep(1_500); // a few refused probes
  assert.equal(sup.stats.connected, false);

  const upAt = performance.now();
  const again = await server('legit-phone', { port });
  await waitFor(() => sup.stats.connected, 5_000, 'reconnected once the port answers');
  const ms = performance.now() - upAt;
  assert.equal(again.logins, 1, 'one login: the probes never log in');
  assert.equal(sup.stats.reconnects, 1);
  assert.ok(logs.some((l) => l.msg === 'AMI port answers again; connecting now'));
  const gap = logs.find((l) => l.msg === 'AMI reconnected; events Asterisk sent during the gap were not seen');
  assert.ok(typeof gap?.['gapMs'] === 'number' && gap['gapMs'] >= 1_500, 'the gap is logged with its length');
  t.diagnostic(`reconnected ${ms.toFixed(0)} ms after the AMI port answered again (backoff 60 s)`);
});

test('stop() logs off, resolves once closed and does not reconnect', async () => {
  const s = await server('legit-phone');
  const actions: string[] = [];
  s.on('action', (h) => actions.push(header(h, 'action')));
  const closes: number[] = [];
  s.on('close', (c) => closes.push(c.id));
  const { sup } = supervise(s.port);
  const disconnected: DisconnectedInfo[] = [];
  sup.on('disconnected', (d) => disconnected.push(d));
  sup.start();
  await waitFor(() => sup.stats.connected, 2000, 'connected');
  await sup.stop();
  assert.equal(actions.at(-1), 'Logoff');
  assert.equal(sup.stats.connected, false);
  assert.deepEqual(
    disconnected.map((d) => d.reason),
    ['stopped'],
  );
  await waitFor(() => closes.length === 1, 1000, 'server sees the close');
  await sleep(400);
  assert.equal(s.connections, 1, 'no reconnect after stop');
});

test('a fault while reading drops that session and re-establishes it; nothing is left half-read', async () => {
  const s = await server('invite-no-auth-reply');
  const { sup, sink, logs } = supervise(s.port);
  sink.throwOnce = true;
  sup.start();
  await waitFor(
    () => logs.some((l) => l.level === 50 && l.msg === 'internal error in the AMI client; reconnecting'),
    3000,
    'the fault logged',
  );
  await waitFor(() => sup.stats.connects === 2, 3000, 'a fresh session');
  assert.ok(sink.resets >= 2, 'the sink was told each session ended');
});

test('a listener that throws does not stop the client', async () => {
  const s = await server('legit-phone');
  const { sup, logs } = supervise(s.port);
  sup.on('connected', () => {
    throw new Error('listener bug');
  });
  sup.start();
  await waitFor(() => logs.some((l) => l.level === 50 && l.msg === 'an AMI listener threw; continuing'), 3000, 'the throw logged');
  assert.equal(sup.stats.connected, true);
  assert.equal(sup.stats.connects, 1);
});

test('a reply of ours closes an open injection; a forged reply (unknown ActionID) goes to the sink with the events', async () => {
  const s = await server('legit-phone');
  const { sup, sink, messages } = supervise(s.port);
  sup.start();
  await s.playDone;
  await waitFor(() => messages.length === eventRecords('legit-phone').length, 3000, 'the recording');
  const boundaries = sink.boundaries;
  sink.awaitingBoundary = true; // as after an injection's head: the client pings to learn where Asterisk's text resumes
  s.inject('Response: Follows\r\nActionID: guessed\r\nPrivilege: Command\r\n\r\n');
  await waitFor(() => sink.boundaries > boundaries, 3000, 'the Ping reply');
  sink.awaitingBoundary = false;
  assert.equal(messages.at(-1), 'Response: Follows\r\nActionID: guessed\r\nPrivilege: Command\r\n\r\n');
});

test('no log line of any test above contains a secret', () => {
  assert.ok(allLogLines.length > 20);
  for (const line of allLogLines) assert.ok(!line.includes(SECRET) && !line.includes(WRONG), line);
});
