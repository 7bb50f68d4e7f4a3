// The README's Redis ACL, applied as an operator would copy it, must be enough for the daemon and every CLI verb and
// refuse nothing they do; a user lacking one of its rights must fail with a clear error; and the same works over TLS.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startBed, MARKER } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { startRedisCluster } from '../support/redis-cluster.js';
import { waitFor } from '../support/netns.js';
import { cli } from '../support/cli.js';
import { freePort } from '../support/http.js';
import { writeConfig } from '../support/daemon-process.js';

const ADMIN_PASSWORD = 'admin-pw-5d1c';
const PASSWORD = 'acl-pw-93be71';

/** The `ACL SETUSER` line of the README, as operators copy it: its user and the rules after the password. */
function readmeAcl(): { user: string; rules: string[] } {
  const m = /^ACL SETUSER (\S+) on >\S+ (.+)$/m.exec(readFileSync('docs/fleet.md', 'utf8'));
  assert.ok(m, 'README.md has an `ACL SETUSER <user> on >password …` line');
  return { user: m[1]!, rules: m[2]!.trim().split(/\s+/) };
}

async function admin(port: number, fn: (client: Redis) => Promise<void>): Promise<void> {
  const client = new Redis({ port, host: '127.0.0.1', password: ADMIN_PASSWORD, maxRetriesPerRequest: 1 });
  try {
    await fn(client);
  } finally {
    client.disconnect();
  }
}

async function setUser(port: number, user: string, rules: readonly string[]): Promise<void> {
  await admin(port, async (c) => {
    await c.call('ACL', 'SETUSER', user, 'reset', 'on', `>${PASSWORD}`, ...rules);
    await c.call('ACL', 'LOG', 'RESET');
  });
}

/** What the server refused since the last reset, as `reason object (user)`. */
async function refusals(port: number): Promise<string[]> {
  let out: string[] = [];
  await admin(port, async (c) => {
    const log = (await c.call('ACL', 'LOG')) as unknown[][];
    out = log.map((entry) => {
      const e: Record<string, unknown> = {};
      for (let i = 0; i + 1 < entry.length; i += 2) e[String(entry[i])] = entry[i + 1];
      return `${String(e.reason)} ${String(e.object)} (${String(e.username)})`;
    });
  });
  return out;
}

async function startAdminRedis(args: string[] = []): Promise<RedisServer> {
  return startRedisServer({ password: ADMIN_PASSWORD, args });
}

test('every command a Lua script runs is in the README ACL (Redis checks them against the caller)', () => {
  const { rules } = readmeAcl();
  const files = readdirSync('src/store/lua', { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.lua'));
  assert.ok(files.length >= 3, files.join(', '));
  for (const file of files) {
    const source = readFileSync(join('src/store/lua', file), 'utf8');
    for (const [, command] of source.matchAll(/redis\.p?call\(\s*['"]([A-Za-z]+)['"]/g)) {
      assert.ok(rules.includes(`+${command!.toLowerCase()}`), `${file} runs ${command}, which the README ACL does not allow`);
    }
  }
});

test("the README's ACL: the daemon and list, show, status, ban and unban work, and nothing they do is refused", async (t) => {
  const { user, rules } = readmeAcl();
  const redis = await startAdminRedis();
  t.after(() => redis.stop());
  await setUser(redis.port, user, rules);
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: `redis://${user}:${PASSWORD}@127.0.0.1:${redis.port}`,
    keyPrefix: 'ami-guard:',
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  const run = (...args: string[]) => cli([...args, '--config', bed.configFile]);

  const list = await run('list', '--json');
  assert.equal(list.code, 0, list.stderr);
  assert.ok((JSON.parse(list.stdout) as Array<{ address: string }>).some((r) => r.address === '198.18.0.11'));
  const show = await run('show', '198.18.0.11', '--json');
  assert.equal(show.code, 0, show.stderr);
  assert.equal((JSON.parse(show.stdout) as { banned: boolean }).banned, true);
  await waitFor(
    'status to show the daemon',
    async () => {
      const status = await run('status', '--json');
      assert.equal(status.code, 0, status.stderr);
      const s = JSON.parse(status.stdout) as { redis: { reachable: boolean }; nodes: Array<{ node: string }> };
      assert.equal(s.redis.reachable, true);
      return s.nodes.some((n) => n.node === 'test-node') ? true : undefined;
    },
    15_000,
  );

  const ban = await run('ban', '203.0.113.0/24', '--for', '1h', '--reason', 'acl test');
  assert.equal(ban.code, 0, ban.stderr);
  await waitFor('the manual ban in the kernel', async () => ((await bed.elements()).includes('203.0.113.0/24') ? true : undefined));
  const unban = await run('unban', '203.0.113.0/24', '198.18.0.11');
  assert.equal(unban.code, 0, unban.stderr);
  await waitFor('both bans lifted in the kernel', async () => {
    const els = await bed.elements();
    return els.includes('203.0.113.0/24') || els.includes('198.18.0.11') ? undefined : true;
  });
  assert.deepEqual((await bed.elements()).sort(), [MARKER]);

  // the daemon's periodic writes (status record, fleet reads) have had time to run as well
  assert.deepEqual(await refusals(redis.port), [], 'commands the README ACL does not allow');
  assert.equal(bed.daemon.child.exitCode, null);
});

test('a user lacking one right fails clearly: the CLI with exit code 1, the daemon at start', async (t) => {
  const { user, rules } = readmeAcl();
  assert.ok(rules.includes('+zrange'));
  const redis = await startAdminRedis();
  t.after(() => redis.stop());
  await setUser(
    redis.port,
    user,
    rules.filter((r) => r !== '+zrange'),
  );
  const url = `redis://${user}:${PASSWORD}@127.0.0.1:${redis.port}`;

  const list = await cli(['list'], { AMI_GUARD_REDIS_URL: url });
  assert.equal(list.code, 1);
  assert.equal(list.stderr, "ami-guard: NOPERM this user has no permissions to run the 'zrange' command\n");
  assert.ok(!list.stderr.includes(PASSWORD));

  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', redisUrl: url, keyPrefix: 'ami-guard:' });
  assert.equal(await bed.daemon.exited, 1);
  const errors = bed.daemon.logs.filter((l) => l.level >= 50);
  assert.equal(errors.length, 1, bed.daemon.output());
  assert.equal(errors[0]!.msg, 'ami-guard could not start');
  assert.match(String(errors[0]!.err), /NOPERM .*'zrange'/);
  assert.ok(!bed.daemon.output().includes(PASSWORD));
});

/** A throwaway CA and a certificate for 127.0.0.1 signed by it, in a directory removed when the test ends. */
function certificates(t: TestContext): { ca: string; cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ag-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const f = (name: string): string => join(dir, name);
  const openssl = (...args: string[]): void => {
    const r = spawnSync('openssl', args, { encoding: 'utf8' });
    if (r.error || r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.error?.message ?? r.stderr}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=ami-guard test CA');
  openssl('req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1');
  writeFileSync(f('san.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  openssl(
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('server.pem'),
    '-days',
    '2',
    '-extfile',
    f('san.cnf'),
  );
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

test('over TLS (rediss://, a private CA given to node): the daemon bans and the CLI lists; without the CA, a clear refusal', async (t) => {
  const { user, rules } = readmeAcl();
  const tls = certificates(t);
  const tlsPort = await freePort();
  // the plain port stays for the admin connection and the helper's readiness check; ami-guard uses the TLS one
  const redis = await startAdminRedis([
    '--tls-port',
    String(tlsPort),
    '--tls-cert-file',
    tls.cert,
    '--tls-key-file',
    tls.key,
    '--tls-ca-cert-file',
    tls.ca,
    '--tls-auth-clients',
    'no',
  ]);
  t.after(() => redis.stop());
  await setUser(redis.port, user, rules);
  const url = `rediss://${user}:${PASSWORD}@127.0.0.1:${tlsPort}`;
  const trusted = { NODE_EXTRA_CA_CERTS: tls.ca };

  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: url,
    keyPrefix: 'ami-guard:',
    env: trusted,
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  const list = await cli(['list', '--json', '--config', bed.configFile], trusted);
  assert.equal(list.code, 0, list.stderr);
  assert.ok((JSON.parse(list.stdout) as Array<{ address: string }>).some((r) => r.address === '198.18.0.11'));
  assert.deepEqual(await refusals(redis.port), []);

  // an admin host without the CA (no daemon there: the CLI goes to Redis itself)
  const { control: _, ...noDaemon } = JSON.parse(readFileSync(bed.configFile, 'utf8')) as Record<string, unknown>;
  const untrusted = await cli(['list', '--config', writeConfig(noDaemon)]);
  assert.equal(untrusted.code, 1);
  assert.match(
    untrusted.stderr,
    /^ami-guard: cannot reach Redis at rediss:\/\/amiguard:\*+@127\.0\.0\.1:\d+: self-signed certificate in certificate chain\n$/,
  );
  assert.ok(!untrusted.stderr.includes(PASSWORD));
  // the daemon without the CA cannot reach Redis: it says why and protects the PBX on its local fallback meanwhile
  const refused = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', redisUrl: url, keyPrefix: 'ami-guard:' });
  const boot = await refused.daemon.waitForLog((l) => l.msg.startsWith('store unreachable at start: starting on the local fallback'));
  assert.match(
    String(boot.err),
    /^Redis at rediss:\/\/amiguard:\*+@127\.0\.0\.1:\d+ is unreachable: self-signed certificate in certificate chain$/,
  );
  assert.ok(
    refused.daemon.logs.some((l) => l.msg === 'redis unavailable' && /self-signed certificate in certificate chain/.test(String(l.error))),
  );
  assert.equal(refused.daemon.child.exitCode, null);
  assert.ok(!refused.daemon.output().includes(PASSWORD));
});

test("the README's ACL on a Redis Cluster, set on every node: the daemon bans, the CLI lists, nothing refused", async (t) => {
  const { user, rules } = readmeAcl();
  const cluster = await startRedisCluster(3);
  t.after(() => cluster.stop());
  const ports = cluster.nodes.map((n) => Number(n.split(':')[1]));
  for (const port of ports) {
    const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    await c.call('ACL', 'SETUSER', user, 'reset', 'on', `>${PASSWORD}`, ...rules);
    await c.call('ACL', 'LOG', 'RESET');
    c.disconnect();
  }
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    redisUrl: '',
    keyPrefix: 'ami-guard:',
    config: { redis: { cluster: cluster.nodes, username: user, password: PASSWORD } },
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  const list = await cli(['list', '--json', '--config', bed.configFile]);
  assert.equal(list.code, 0, list.stderr);
  assert.ok((JSON.parse(list.stdout) as Array<{ address: string }>).some((r) => r.address === '198.18.0.11'));
  for (const port of ports) {
    const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    const log = (await c.call('ACL', 'LOG')) as unknown[][];
    c.disconnect();
    const entries = log.map((e) => e.map(String).join(' '));
    const setname = entries.filter((e) => /object client\|setname/.test(e));
    if (setname.length > 0) t.diagnostic(`node ${port}: ${setname.length} CLIENT SETNAME refused (ioredis carries on)`);
    assert.deepEqual(
      entries.filter((e) => !setname.includes(e)),
      [],
      `node ${port}`,
    );
  }
});
