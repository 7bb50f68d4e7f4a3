// What the daemon and the CLI read from Redis is input: someone with access to Redis (another tool, an operator's
// typo, an attacker) may have written anything under our prefix. One bad entry is skipped with a warning; it never
// stops a start, a reconciliation, `list`, `show` or `status`, and never reaches a terminal raw. (Before, one index
// member `+inf` made the whole reconciliation fail, and a restored table of 40,000 bans stayed empty.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { parseTarget } from '../../src/net/ip.js';
import { KeySpace, bucketOf } from '../../src/store/keys.js';
import { createRedisClient } from '../../src/store/redis-client.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { DEFAULT_RULES } from '../../src/store/store.js';
import { startBed, MARKER } from '../support/bed.js';
import { played } from '../support/bed-wait.js';
import { cli } from '../support/cli.js';
import { waitFor } from '../support/netns.js';
import { startRedisServer } from '../support/redis-server.js';

const PREFIX = 'bad:';
const GOOD = 5_000;
const ESC = '\u001b';

function goodAddress(i: number): string {
  return `10.7.${(i >> 8) & 255}.${i & 255}`;
}

test('bad entries in Redis are skipped with a warning: the start, the reconciliation, list, show and status go on', async (t) => {
  const redis = await startRedisServer();
  t.after(() => redis.stop());
  const raw = new Redis(redis.url);
  t.after(async () => {
    await raw.quit();
  });
  const keys = new KeySpace(PREFIX);
  const key = (address: string): { record: string; index: string } => {
    const target = parseTarget(address)!;
    return { record: keys.record(target), index: keys.index(bucketOf(target)) };
  };

  // the good: bans written the way every node writes them
  const store = new RedisStore({
    client: createRedisClient({ url: redis.url }),
    keyPrefix: PREFIX,
    nodeId: 'pbx-seed',
    policy: { maxretry: 5, findtimeMs: 600_000, bantimeMs: 3_600_000, historyTtlMs: 30 * 86_400_000, ...DEFAULT_RULES },
  });
  for (let i = 0; i < GOOD; i += 500) {
    await Promise.all(
      Array.from({ length: 500 }, (_, j) =>
        store.ban({ target: parseTarget(goodAddress(i + j))!, reason: 'manual', durationMs: 7_200_000, now: Date.now() }),
      ),
    );
  }
  await store.close();

  // the bad: an index member with an infinite end, members that are no address (one with terminal escapes), a
  // record whose text fields carry terminal escapes, a record that is not a record, a key of the wrong type
  const later = Date.now() + 3_600_000;
  await raw.zadd(key('203.0.113.9').index, '+inf', '203.0.113.9');
  await raw.zadd(key('203.0.113.10').index, later, `${ESC}[31mnot-an-address`);
  await raw.zadd(key('203.0.113.11').index, later, '010.1.1.1');
  const tainted = '198.51.100.77';
  await raw.set(
    key(tainted).record,
    `u=${later.toString(36)};a=${Date.now().toString(36)};r=%1B%5B2J;n=${ESC}]0;x=%1B%5B31mpwned;h=garbage,,::`,
  );
  await raw.zadd(key(tainted).index, later, tainted);
  await raw.set(key('198.51.100.78').record, `${ESC}[2J not a record at all`);
  await raw.zadd(key('198.51.100.78').index, later, '198.51.100.78');
  await raw.hset(key('198.51.100.79').record, 'u', 'wrong type');
  await raw.zadd(key('198.51.100.79').index, later, '198.51.100.79');
  // node status records: a name that is no node id, and a record that is not JSON
  await raw.zadd(`${PREFIX}nodes`, Date.now(), `${ESC}[31mpbx-evil`);
  await raw.set(`${PREFIX}node:${ESC}[31mpbx-evil`, '{"node":"x"}');
  await raw.zadd(`${PREFIX}nodes`, Date.now(), 'pbx-garbled');
  await raw.set(`${PREFIX}node:pbx-garbled`, `${ESC}[2J{not json`);

  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', redisUrl: redis.url, keyPrefix: PREFIX });
  const reconciled = await bed.daemon.waitForLog((l) => l.msg === 'reconciled firewall with store');
  // the good bans and the three bad records that are still valid index entries (their record is not read here)
  assert.equal(reconciled.bans, GOOD + 3, JSON.stringify(reconciled));
  const skipped = bed.daemon.logs.find((l) => l.msg === 'ban index entries that are not a valid ban were skipped');
  assert.equal(skipped?.skipped, 3, JSON.stringify(skipped));
  const inKernel = await bed.elements();
  assert.equal(inKernel.length, GOOD + 3);
  assert.ok(inKernel.includes(goodAddress(0)) && inKernel.includes(goodAddress(GOOD - 1)) && inKernel.includes(tainted));
  assert.ok(!inKernel.includes('203.0.113.9'), 'an endless ban is no ban');

  // fleet messages that are not ours: skipped, and the channel goes on
  await played(bed);
  await raw.xadd(
    `${PREFIX}stream`,
    '*',
    't',
    'bans',
    'n',
    'pbx-x',
    'o',
    'other',
    'b',
    `${ESC}[31m 1 x\n203.0.113.20 soon failures\n203.0.113.21 ${later} failures`,
  );
  await raw.xadd(`${PREFIX}stream`, '*', 't', 'ban', 'a', '203.0.113.22');
  await raw.xadd(`${PREFIX}stream`, '*', 'b', 'x'.repeat(100_000));
  await waitFor(
    'the good line of the message applied',
    async () => ((await bed.elements()).includes('203.0.113.21') ? true : undefined),
    15_000,
  );
  assert.ok(!(await bed.elements()).includes('203.0.113.20'));
  assert.ok(bed.daemon.logs.filter((l) => l.msg === 'malformed fleet message ignored').length >= 3);
  assert.equal(bed.daemon.child.exitCode, null, 'the daemon kept running');
  assert.ok(!bed.daemon.output().includes(ESC), "nothing raw in the daemon's log");

  const list = await cli(['list', '--config', bed.configFile]);
  assert.equal(list.code, 0, list.stderr);
  assert.ok(list.stdout.includes(goodAddress(7)));
  const show = await cli(['show', tainted, '--config', bed.configFile]);
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /banned:\s+yes/);
  const status = await cli(['status', '--config', bed.configFile]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /2 node status record\(s\) in Redis could not be read/);
  for (const out of [list, show, status]) {
    assert.ok(!out.stdout.includes(ESC) && !out.stderr.includes(ESC), `raw escape in ${JSON.stringify(out.stdout.slice(0, 200))}`);
  }
  const json = await cli(['status', '--json', '--config', bed.configFile]);
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout) as { nodes: Array<{ node: string }>; unreadableNodeRecords?: number };
  const nodes = report.nodes.map((n) => n.node);
  assert.ok(nodes.includes('test-node') && !nodes.some((n) => n.includes(ESC)), JSON.stringify(nodes));
  assert.equal(report.unreadableNodeRecords, 2);
  assert.ok((await bed.elements()).includes(MARKER) === false);
});
