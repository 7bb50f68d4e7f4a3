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
  /** events that carried injected lines (lab-injection) */
  injections?: number;
}
interface Truth {
  sources: Source[];
  attackers: string[];
  legitimate: string[];
}

const defaults = loadConfig({ env: {} }).policy;
const scenarios = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.truth.json'))
  .map((f) => f.replace('.truth.json', ''))
  .sort();

/** Every attacker of the ground truth: with the defaults, failures and the silent-scanner rule cover them all. */
function attackers(truth: Truth): string[] {
  return truth.sources
    .filter((s) => s.role === 'attacker')
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
    const expected = attackers(truth);
    assert.deepEqual(banned, expected);
    for (const legit of truth.legitimate) assert.ok(!banned.includes(legit), `${legit} is legitimate and must not be banned`);
    // each address sits in the set of its family
    for (const el of await bed.firewall.list()) assert.equal(el.family, el.address.includes(':') ? 6 : 4, el.address);
    const banLogs = bed.daemon.logs.filter((l) => l.event === 'ban' && l.address !== '192.0.2.250');
    assert.deepEqual(banLogs.map((l) => l.address).sort(), expected, 'one ban log line per banned attacker');
    // no double counting: the ban falls at exactly the threshold of its rule
    for (const l of banLogs) {
      if (l.reason === 'scanner') assert.equal(l.count, defaults.scanner.maxretry, `${s} ${l.address}`);
      else if (l.reason === 'injection')
        assert.ok((truth.sources.find((x) => x.ip === l.address)?.injections ?? 0) > 0, `${s} ${l.address}`);
      else {
        assert.equal(l.reason, 'failures');
        assert.equal(l.count, defaults.maxretry, `${s} ${l.address}`);
      }
    }
    // the dry run on the same recording (raw .ami bytes), and on Asterisk's security.log of the same seconds,
    // predicts exactly what the daemon did
    for (const input of [`${s}.ami`, `${s}.security.log`]) {
      const dry = await cli(['replay', join(FIXTURES, input), '--json', '--config', bed.configFile]);
      assert.equal(dry.code, 0, dry.stderr);
      const report = JSON.parse(dry.stdout) as {
        addresses: Array<{ address: string; verdict: string; reason: string; countAtBan: number | null }>;
      };
      assert.deepEqual(
        report.addresses
          .filter((a) => a.verdict === 'banned')
          .map((a) => a.address)
          .sort(),
        banned,
        input,
      );
      for (const a of report.addresses) {
        if (a.verdict === 'banned' && a.reason !== 'injection')
          assert.ok(a.countAtBan === defaults.maxretry || a.countAtBan === defaults.scanner.maxretry, input);
      }
    }
  });
});

test('the silent scanner is banned as a scanner, with the defaults', () => {
  // invite-no-auth-reply holds nothing but ChallengeSent: only the scanner rule can catch it
  const truth = JSON.parse(readFileSync(join(FIXTURES, 'invite-no-auth-reply.truth.json'), 'utf8')) as Truth;
  const scanner = truth.sources.find((x) => x.role === 'attacker')!;
  assert.deepEqual(Object.keys(scanner.ami_events), ['ChallengeSent']);
  assert.ok(scanner.ami_events.ChallengeSent! >= defaults.scanner.maxretry);
});
