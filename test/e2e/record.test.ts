// `ami-guard record` against a real TCP AMI server (the replay server playing each real recording), then `ami-guard
// replay` of the file it wrote: the same bans, for the same reasons and at the same counts, as the real daemon decided
// live on the same stream (nft in a namespace, the embedded store). And what record must never do: write the secret,
// overwrite a file, wait for ever on an AMI that is not there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { startBed, FIXTURES, AMI_USER, AMI_SECRET, MARKER } from '../support/bed.js';
import { startReplayServer, type ReplayServer } from '../support/replay-ami-server.js';
import { CLI, writeConfig } from '../support/daemon-process.js';
import { waitFor } from '../support/netns.js';
import { cli } from '../support/cli.js';
import { loadRecording, type Recording } from '../../src/ami/recording.js';
import { loadConfig } from '../../src/config/load.js';

const defaults = loadConfig({ env: {} }).policy;
const scenarios = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.truth.json'))
  .map((f) => f.replace('.truth.json', ''))
  .sort();
/** a message of Asterisk's that no recording holds: once it is in the file, everything played before it is too */
const LAST = 'Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 424242\r\nLastReload: 424242\r\nStatus: Fully Booted\r\n\r\n';

interface Recorder {
  readonly exited: Promise<number | null>;
  stderr(): string;
  stop(): void;
}

function startRecorder(args: readonly string[]): Recorder {
  const child = spawn(process.execPath, [CLI, 'record', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdout.resume();
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { exited, stderr: () => stderr, stop: () => child.kill('SIGINT') };
}

function amiConfig(server: ReplayServer, secret = AMI_SECRET): string {
  return writeConfig({ ami: { host: '127.0.0.1', port: server.port, username: AMI_USER, secret } });
}

/** Asterisk's messages in order, without greetings and without the replies to whoever recorded them. */
function asteriskMessages(r: Recording): string[] {
  return r.records.filter((m) => !m.banner && !(/^Response: /.test(m.raw) && /\r\nActionID: /.test(m.raw))).map((m) => m.raw);
}

scenarios.forEach((s, i) => {
  const format = i % 2 === 0 ? 'jsonl' : 'ami';
  test(`${s}: replay of what record wrote (.${format}) decides what the daemon decided live`, async (t) => {
    const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: s });
    const banned = await bed.settle();
    const live = bed.daemon.logs.filter((l) => l.event === 'ban' && l.address !== MARKER);

    const server = await startReplayServer({ recording: join(FIXTURES, `${s}.jsonl`), username: AMI_USER, secret: AMI_SECRET, speed: 0 });
    t.after(() => server.stop());
    const file = join(mkdtempSync(join(tmpdir(), 'ag-rec-')), `${s}.${format}`);
    const recorder = startRecorder([file, '--config', amiConfig(server)]);
    t.after(() => recorder.stop());
    await server.playDone;
    server.inject(LAST);
    await waitFor(
      'the last message in the recording',
      () => (existsSync(file) && readFileSync(file).includes('Uptime: 424242') ? true : undefined),
      20_000,
    );
    recorder.stop();
    assert.equal(await recorder.exited, 0, recorder.stderr());

    const fixture = await loadRecording(join(FIXTURES, `${s}.jsonl`));
    const recorded = await loadRecording(file);
    const connections = new Set(fixture.records.map((r) => r.conn)).size;
    assert.match(
      recorder.stderr(),
      new RegExp(`: \\d+ messages \\(\\d+ security events, \\d+ injections\\) from ${connections} connections?`),
    );
    assert.equal(recorded.records.filter((r) => r.banner).length, connections, 'each connection starts with its greeting');
    // every message Asterisk sent, in order and byte for byte
    assert.deepEqual(asteriskMessages(recorded), [...asteriskMessages(fixture), LAST]);
    assert.ok(!readFileSync(file).includes(AMI_SECRET), 'the secret is never written');
    assert.equal(statSync(file).mode & 0o777, 0o600);

    const dry = await cli(['replay', file, '--json', '--config', bed.configFile]);
    assert.equal(dry.code, 0, dry.stderr);
    const report = JSON.parse(dry.stdout) as {
      addresses: Array<{ address: string; verdict: string; reason: string | null; countAtBan: number | null }>;
    };
    const predicted = report.addresses.filter((a) => a.verdict === 'banned');
    assert.deepEqual(predicted.map((a) => a.address).sort(), banned);
    for (const a of predicted) {
      const l = live.find((x) => x.address === a.address);
      assert.ok(l, `${a.address} was banned live`);
      // The daemon folds the events of one socket read and records an address's challenges before its failures, so
      // when both rules are about to fire, which one does depends on how the stream was cut into reads; the dry run
      // takes events one by one. Either way the ban falls at its rule's threshold; an injection is an injection.
      assert.equal(a.reason === 'injection', l.reason === 'injection', a.address);
      if (a.reason === l.reason && a.reason !== 'injection') assert.equal(a.countAtBan, l.count, `${a.address}: the count the ban fell at`);
      if (a.reason === 'failures') assert.equal(a.countAtBan, defaults.maxretry, a.address);
      if (a.reason === 'scanner') assert.equal(a.countAtBan, defaults.scanner.maxretry, a.address);
    }
  });
});

test('record writes a new file only, and stops by itself after --duration', async (t) => {
  const server = await startReplayServer({
    recording: join(FIXTURES, 'legit-phone.jsonl'),
    username: AMI_USER,
    secret: AMI_SECRET,
    speed: 1,
  });
  t.after(() => server.stop());
  const dir = mkdtempSync(join(tmpdir(), 'ag-rec-'));
  const existing = join(dir, 'keep.jsonl');
  writeFileSync(existing, 'precious\n');
  const refused = await cli(['record', existing, '--config', amiConfig(server)]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /exists/);
  assert.equal(readFileSync(existing, 'utf8'), 'precious\n');
  const wrongName = await cli(['record', join(dir, 'capture.txt'), '--config', amiConfig(server)]);
  assert.equal(wrongName.code, 2);
  assert.match(wrongName.stderr, /\.jsonl.*\.ami/);

  const file = join(dir, 'short.ami');
  const r = await cli(['record', file, '--duration', '1s', '--config', amiConfig(server)]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /: \d+ messages \(\d+ security events, 0 injections\) from 1 connection in \d/);
  assert.equal(server.logins, 1);
  assert.ok(readFileSync(file, 'latin1').startsWith('Asterisk Call Manager/'), 'the greeting comes first');
});

test('a refused login stops record with the reason and exit 1, the secret nowhere', async (t) => {
  const server = await startReplayServer({
    recording: join(FIXTURES, 'legit-phone.jsonl'),
    username: AMI_USER,
    secret: AMI_SECRET,
    speed: 0,
  });
  t.after(() => server.stop());
  const wrong = 'wrong-secret-5e1f';
  const file = join(mkdtempSync(join(tmpdir(), 'ag-rec-')), 'refused.jsonl');
  const r = await cli(['record', file, '--config', amiConfig(server, wrong)]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`AMI login rejected for user ${AMI_USER} at 127\\.0\\.0\\.1:${server.port}: Authentication failed`));
  assert.ok(!r.stderr.includes(wrong) && !r.stdout.includes(wrong));
  assert.ok(!readFileSync(file).includes(wrong));
});

test('an AMI port nobody listens on: record gives up with the reason and exit 1', async () => {
  // a port that was free a moment ago
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const file = join(mkdtempSync(join(tmpdir(), 'ag-rec-')), 'nobody.jsonl');
  const r = await cli([
    'record',
    file,
    '--config',
    writeConfig({ ami: { host: '127.0.0.1', port, username: AMI_USER, secret: AMI_SECRET } }),
  ]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`no AMI session with 127\\.0\\.0\\.1:${port} within 10 s: ECONNREFUSED`));
});
