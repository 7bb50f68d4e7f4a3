// The state directory on a real file system: the embedded store's bans, history and trust written atomically and
// read back into a new store; a file that is not ours, damaged lines, a symbolic link or a huge file set aside or
// skipped, never a stop; a directory that cannot be written said once; the store identity file.
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../src/log.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { persistEmbeddedStore } from '../../src/store/embedded-state.js';
import { STATE_FILE } from '../../src/store/memory-state.js';
import { IdentityFile, IDENTITY_FILE } from '../../src/store/identity-file.js';
import { StateDir, MAX_STATE_BYTES } from '../../src/store/state-file.js';
import { NODE, POLICY, activity, failures, target } from './contract.js';

interface Logged {
  level: number;
  msg: string;
  [k: string]: unknown;
}

function setup(t: TestContext): { path: string; dir: StateDir; logs: Logged[]; logger: ReturnType<typeof createLogger> } {
  const parent = mkdtempSync(join(tmpdir(), 'ag-state-'));
  t.after(() => rmSync(parent, { recursive: true, force: true }));
  const sink = new PassThrough();
  const logs: Logged[] = [];
  let partial = '';
  sink.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) if (l.trim()) logs.push(JSON.parse(l) as Logged);
  });
  const logger = createLogger('info', sink);
  const path = join(parent, 'state');
  return { path, dir: new StateDir(path, logger), logs, logger };
}

function store(t: TestContext): MemoryStore {
  const s = new MemoryStore({ nodeId: NODE, policy: POLICY });
  t.after(() => s.close());
  return s;
}

/** what the log said up to now (pino writes to the sink at once; the sink hands it over on the next turn) */
async function settled(logs: Logged[]): Promise<Logged[]> {
  await new Promise((r) => setImmediate(r));
  return logs;
}

const HEADER = (id = 'abc123') => `${JSON.stringify({ format: 'ami-guard-state', version: 1, id, node: 'pbx1', written: Date.now() })}\n`;

describe('the embedded store in its state directory', () => {
  it('keeps bans, history and trust across a restart, written atomically, root-only', async (t) => {
    const { path, dir, logger } = setup(t);
    const now = Date.now();
    const first = store(t);
    const writer = await persistEmbeddedStore({ store: first, dir, nodeId: NODE, logger });
    assert.ok(writer);
    const id = (await first.identity()).id;
    const [banned] = await first.recordActivity(
      [failures('198.51.100.7', now, POLICY.maxretry, 'ChallengeResponseFailed', '6001\u001b[2J')],
      now,
    );
    assert.equal(banned?.type, 'banned');
    const manual = await first.ban({
      target: target('203.0.113.0/24'),
      reason: 'manual',
      durationMs: 86_400_000,
      now,
      note: 'scanner net; "quoted"\n',
    });
    await first.recordActivity([activity('2001:db8::5', now, { successes: 1, trust: true })], now);
    // a ban lifted keeps its history; one over by now is not carried over
    await first.ban({ target: target('198.51.100.8'), reason: 'manual', durationMs: 60_000, now });
    await first.unban(target('198.51.100.8'), now);
    await writer.close();

    assert.deepEqual(readdirSync(path), [STATE_FILE], 'no temp file left behind');
    assert.equal(statSync(path).mode & 0o777, 0o700);
    assert.equal(statSync(join(path, STATE_FILE)).mode & 0o777, 0o600);

    const second = store(t);
    const again = await persistEmbeddedStore({ store: second, dir: new StateDir(path, logger), nodeId: NODE, logger });
    assert.ok(again);
    assert.deepEqual(await second.identity(), { id, created: false }, 'the same store, not a new one');
    assert.deepEqual(await second.getBan(target('198.51.100.7'), now + 1), banned?.type === 'banned' ? banned.ban : null);
    assert.deepEqual(await second.getBan(target('203.0.113.0/24'), now + 1), manual);
    assert.equal(await second.getBan(target('198.51.100.8'), now + 1), null, 'the unban holds');
    assert.equal((await second.history(target('198.51.100.8'))).length, 1);
    assert.deepEqual(await second.history(target('198.51.100.7')), await first.history(target('198.51.100.7')));
    assert.equal(await second.trustedUntil(target('2001:db8::5'), now + 1), now + POLICY.trust.ttlMs);
    // the history counts: the next ban of 198.51.100.7 is escalated
    assert.equal((await second.history(target('198.51.100.7'))).length, 1);
    await again.close();
  });

  it('writes once for a burst of bans, and the last change at close', async (t) => {
    const { dir, logger } = setup(t);
    let writes = 0;
    const counting = new (class extends StateDir {
      override write(name: string, chunks: AsyncIterable<string> | Iterable<string>): Promise<void> {
        writes++;
        return super.write(name, chunks);
      }
    })(dir.path, logger);
    const s = store(t);
    const writer = await persistEmbeddedStore({ store: s, dir: counting, nodeId: NODE, logger });
    const now = Date.now();
    for (let i = 0; i < 10_000; i++) {
      await s.ban({ target: target(`10.1.${i >> 8}.${i & 255}`), reason: 'flood', durationMs: 3_600_000, now });
    }
    await writer!.close();
    assert.equal(writes, 1, 'a burst within the delay is one write');
    const text = readFileSync(join(dir.path, STATE_FILE), 'utf8');
    assert.equal(text.split('\n').filter((l) => l.startsWith('["b"')).length, 10_000);
  });

  it('a file that is not a state file is set aside with a clear line, and the store starts empty', async (t) => {
    for (const [content, why] of [
      ['{"format":"something else"}\n["b"]\n', /not an ami-guard state file/],
      [`${JSON.stringify({ format: 'ami-guard-state', version: 2, id: 'x' })}\n`, /version 2, this ami-guard reads version 1/],
      ['\u0000\u0001garbage', /not an ami-guard state file/],
      [`${JSON.stringify({ format: 'ami-guard-state', version: 1, id: '../../etc' })}\n`, /store id is missing or malformed/],
    ] as const) {
      const { path, dir, logs, logger } = setup(t);
      await dir.open();
      writeFileSync(join(path, STATE_FILE), content);
      const s = store(t);
      const writer = await persistEmbeddedStore({ store: s, dir, nodeId: NODE, logger });
      assert.ok(writer, 'the directory is still used');
      assert.equal((await s.identity()).created, true, 'a new store');
      const line = (await settled(logs)).find((l) => l.level === 50 && /state file unusable, set aside/.test(l.msg));
      assert.ok(line, JSON.stringify(logs));
      assert.match(String(line['why']), why);
      const aside = String(line['setAsideAs']);
      assert.match(aside, /^store\.json\.bad-/);
      assert.equal(readFileSync(join(path, aside), 'utf8'), content, 'kept for the operator to look at');
      await writer.close();
    }
  });

  it('skips lines that are not a valid entry, keeps the others', async (t) => {
    const { path, dir, logs, logger } = setup(t);
    await dir.open();
    const now = Date.now();
    const until = now + 3_600_000;
    const good = ['b', '198.51.100.9', now, until, 'failures', 5, now, now, 'BBBBB', 'pbx1', 0, '', '6001'];
    const lines = [
      good,
      ['b', '010.1.1.1', now, until, 'failures', 5, now, now, 'BBBBB', 'pbx1', 0, '', ''], // not canonical
      ['b', '198.51.100.10/33', now, until, 'failures', 5, now, now, 'BBBBB', 'pbx1', 0, '', ''],
      ['b', '198.51.100.11', now, 'soon', 'failures', 5, now, now, 'BBBBB', 'pbx1', 0, '', ''],
      ['b', '198.51.100.12', now, 1e300, 'failures', 5, now, now, 'BBBBB', 'pbx1', 0, '', ''],
      ['b', '198.51.100.13', until, now, 'failures', 5, now, now, 'BBBBB', 'pbx1', 0, '', ''], // ends before it began
      ['b', '198.51.100.14', now, until, 'x'.repeat(201), 5, now, now, 'BBBBB', 'pbx1', 0, '', ''],
      ['b', '198.51.100.15', now, until, 'failures', 5, now, now, 'bb<script>', 'pbx1', 0, '', ''],
      ['b', '198.51.100.16', now, until],
      ['h', '198.51.100.9', now + 86_400_000, [[now, until, 'failures', 'pbx1']]],
      ['h', '198.51.100.17', now + 86_400_000, [[now, until, 'failures']]],
      ['t', '2001:db8::9', now + 3_600_000],
      ['t', '2001:DB8::10', now + 3_600_000], // not canonical
      ['z', '198.51.100.18', now],
    ].map((l) => JSON.stringify(l));
    lines.push('not json at all', `["b","198.51.100.19",${'1,'.repeat(10_000)}1]`, '{"__proto__":{"polluted":true},"0":"b"}');
    writeFileSync(join(path, STATE_FILE), HEADER() + lines.join('\n') + '\n');
    const s = store(t);
    const writer = await persistEmbeddedStore({ store: s, dir, nodeId: NODE, logger });
    const ban = await s.getBan(target('198.51.100.9'), now + 1);
    assert.equal(ban?.until, until);
    assert.deepEqual(ban?.kinds, { ChallengeResponseFailed: 5 });
    assert.equal(ban?.account, '6001');
    assert.equal((await s.history(target('198.51.100.9'))).length, 1);
    assert.equal(await s.trustedUntil(target('2001:db8::9'), now + 1), now + 3_600_000);
    for (let i = 10; i <= 19; i++) assert.equal(await s.getBan(target(`198.51.100.${i}`), now + 1), null, `198.51.100.${i}`);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
    const warn = (await settled(logs)).find((l) => l.msg === 'state file lines that are not a valid entry were skipped');
    assert.equal(warn?.['skipped'], lines.length - 3);
    assert.equal((await s.identity()).id, 'abc123', 'the file is still the store');
    await writer!.close();
  });

  it('a symbolic link or a file over the size bound is set aside, never followed or read', async (t) => {
    const { path, dir, logs, logger } = setup(t);
    await dir.open();
    const elsewhere = join(path, '..', 'elsewhere.json');
    const original = HEADER('elsewhere');
    writeFileSync(elsewhere, original);
    symlinkSync(elsewhere, join(path, STATE_FILE));
    const s = store(t);
    const w1 = await persistEmbeddedStore({ store: s, dir, nodeId: NODE, logger });
    assert.match(String((await settled(logs)).find((l) => l.level === 50)?.['why']), /symbolic link/);
    assert.equal((await s.identity()).created, true, 'nothing was read through the link');
    await s.ban({ target: target('192.0.2.9'), reason: 'r', durationMs: 60_000, now: Date.now() });
    await w1!.close();
    assert.equal(readFileSync(elsewhere, 'utf8'), original, 'the link target is untouched');
    assert.ok(!statSync(join(path, STATE_FILE)).isSymbolicLink());

    writeFileSync(join(path, STATE_FILE), HEADER());
    truncateSync(join(path, STATE_FILE), MAX_STATE_BYTES + 1);
    logs.length = 0;
    const w2 = await persistEmbeddedStore({ store: store(t), dir, nodeId: NODE, logger });
    assert.match(String((await settled(logs)).find((l) => l.level === 50)?.['why']), /more than/);
    await w2!.close();
  });

  it('a state directory that cannot be written is said once; the store runs without it', async (t) => {
    const { path, logs, logger } = setup(t);
    writeFileSync(path, 'a file where the directory should be');
    const dir = new StateDir(path, logger);
    const s = store(t);
    assert.equal(await persistEmbeddedStore({ store: s, dir, nodeId: NODE, logger }), undefined);
    const identity = new IdentityFile(dir, logger);
    await identity.load();
    await identity.remember('abc');
    assert.equal(identity.remembered, 'abc', 'remembered in memory');
    const lines = (await settled(logs)).filter((l) => /state directory .* cannot be written/.test(l.msg));
    assert.equal(lines.length, 1, JSON.stringify(logs));
  });

  it('a write that fails is said and tried again; the next good one says so', async (t) => {
    const { path, dir, logs, logger } = setup(t);
    const s = store(t);
    let failed = 0;
    const writer = await persistEmbeddedStore({ store: s, dir, nodeId: NODE, logger, onWriteFailure: () => failed++ });
    // a non-empty directory where the file goes: rename(2) cannot replace it, whoever we run as
    const blocker = join(path, STATE_FILE);
    mkdirSync(blocker);
    writeFileSync(join(blocker, 'keep'), '');
    await s.ban({ target: target('192.0.2.9'), reason: 'r', durationMs: 60_000, now: Date.now() });
    await writer!.flush();
    assert.equal(failed, 1);
    assert.ok((await settled(logs)).some((l) => l.level === 50 && l.msg === 'could not write the state file; retrying'));
    assert.deepEqual(
      readdirSync(path).filter((f) => f.endsWith('.tmp')),
      [],
      'the temp file is removed',
    );
    rmSync(blocker, { recursive: true });
    await writer!.close();
    assert.ok(readFileSync(blocker, 'utf8').includes('"192.0.2.9"'));
    assert.ok((await settled(logs)).some((l) => l.msg === 'state file written again'));
  });
});

describe('the store identity file', () => {
  it('remembers the identity across instances; an unusable file is set aside', async (t) => {
    const { path, dir, logs, logger } = setup(t);
    const a = new IdentityFile(dir, logger, 'redis://127.0.0.1:6379');
    await a.load();
    assert.equal(a.remembered, undefined);
    await a.remember('0123456789abcdef01234567');
    const b = new IdentityFile(new StateDir(path, logger), logger);
    await b.load();
    assert.equal(b.remembered, '0123456789abcdef01234567');
    assert.equal(statSync(join(path, IDENTITY_FILE)).mode & 0o777, 0o600);

    writeFileSync(join(path, IDENTITY_FILE), '{"id": "\u001b[2J bad"}');
    const c = new IdentityFile(new StateDir(path, logger), logger);
    await c.load();
    assert.equal(c.remembered, undefined);
    assert.ok((await settled(logs)).some((l) => /store identity file unusable, set aside/.test(l.msg)));
    assert.ok(readdirSync(path).some((f) => f.startsWith(`${IDENTITY_FILE}.bad-`)));
  });
});
