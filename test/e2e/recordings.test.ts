// For every real recording: after the replay, the kernel sets hold exactly the attackers of the ground truth that
// the default policy covers, and never a legitimate phone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startBed, FIXTURES } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { loadConfig } from '../../src/config/load.js';
import { cli } from '../support/cli.js';

interface Source {
  ip: string;
  role: string;
  ami_events: Record<string, number>;
}
interface Truth {
  sources: Source[];
  attackers: string[];
  legitimate: string[];
}

const defaults = loadConfig({ env: {} }).policy;
const scenarios = readdirSync(FIXTURES).filter((f) => f.endsWith('.truth.json')).map((f) => f.replace('.truth.json', '')).sort();

/** Attackers whose recorded failure events reach maxretry under the default failure kinds. */
function coveredAttackers(truth: Truth): string[] {
  return truth.sources
    .filter((s) => s.role === 'attacker')
    .filter((s) => defaults.failures.reduce((n, k) => n + (s.ami_events[k] ?? 0), 0) >= defaults.maxretry)
    .map((s) => s.ip)
    .sort();
}

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

scenarios.forEach((s, i) => {
  test(`${s}: the sets hold exactly the covered attackers, never a legitimate phone`, async (t) => {
    const truth = JSON.parse(readFileSync(join(FIXTURES, `${s}.truth.json`), 'utf8')) as Truth;
    const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: s, redisUrl: redis.url, keyPrefix: `rec${i}:` });
    const banned = await bed.settle();
    const expected = coveredAttackers(truth);
    assert.deepEqual(banned, expected);
    for (const legit of truth.legitimate) assert.ok(!banned.includes(legit), `${legit} is legitimate and must not be banned`);
    // each address sits in the set of its family
    for (const el of await bed.firewall.list()) assert.equal(el.family, el.address.includes(':') ? 6 : 4, el.address);
    const banLogs = bed.daemon.logs.filter((l) => l.event === 'ban' && l.address !== '192.0.2.250');
    assert.deepEqual(banLogs.map((l) => l.address).sort(), expected, 'one ban log line per banned attacker');
    for (const l of banLogs) {
      assert.equal(l.count, defaults.maxretry);
      assert.equal(l.reason, 'failures');
    }
    // the dry run on the same recording (raw .ami bytes) predicts exactly what the daemon did
    const dry = await cli(['replay', join(FIXTURES, `${s}.ami`), '--json', '--config', bed.configFile]);
    assert.equal(dry.code, 0, dry.stderr);
    const report = JSON.parse(dry.stdout) as { addresses: Array<{ address: string; verdict: string; countAtBan: number | null }> };
    assert.deepEqual(report.addresses.filter((a) => a.verdict === 'banned').map((a) => a.address).sort(), banned);
    for (const a of report.addresses) if (a.verdict === 'banned') assert.equal(a.countAtBan, defaults.maxretry);
  });
});

test('every attacker of the recordings except the silent scanner is covered by the defaults', () => {
  // the silent scanner (invite-no-auth-reply: only ChallengeSent) is the subject of its own rule, not of maxretry
  const uncovered: string[] = [];
  for (const s of scenarios) {
    const truth = JSON.parse(readFileSync(join(FIXTURES, `${s}.truth.json`), 'utf8')) as Truth;
    const covered = coveredAttackers(truth);
    for (const a of truth.attackers) if (!covered.includes(a)) uncovered.push(`${s}:${a}`);
  }
  assert.deepEqual(uncovered, ['invite-no-auth-reply:198.18.0.14']);
});
