// The fleet's compose examples (docs/deployment.md): valid for docker-compose, naming only variables the daemon reads, hardened, and PBX 1's
// Redis command run for real (with the local redis-server, in a throwaway network namespace) to show that it binds
// where it says, requires the password, and never puts the password on a command line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { parse } from 'yaml';
import { envVars } from '../../src/config/load.js';
import { createNetns, waitFor } from '../support/netns.js';

const FILES = ['examples/fleet/pbx1.docker-compose.yml', 'examples/fleet/pbx2.docker-compose.yml'];
const PASSWORD = 'fleet-pw-7d1c9e';
const ENV = {
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  AMI_GUARD_AMI_SECRET: 'x',
  AMI_GUARD_REDIS_PASSWORD: PASSWORD,
  AMI_GUARD_NODE_ID: 'pbx9',
  PBX1_ADDRESS: '127.0.0.2',
};

interface Service {
  environment?: Record<string, string>;
  cap_add?: string[];
  cap_drop?: string[];
  read_only?: boolean;
  security_opt?: string[];
  network_mode?: string;
  user?: string;
  command?: string[];
  healthcheck?: { test: string[] };
  depends_on?: unknown;
  volumes?: string[];
}

/** the file as docker-compose resolves it (variables interpolated, `$$` still escaped) */
function resolved(file: string, env: NodeJS.ProcessEnv = ENV): { services: Record<string, Service> } {
  const r = spawnSync('docker-compose', ['-f', file, 'config'], { encoding: 'utf8', env, timeout: 60_000 });
  assert.ok(!r.error, 'docker-compose not found: apt-get install -y docker-compose');
  assert.equal(r.status, 0, r.stderr);
  return parse(r.stdout) as { services: Record<string, Service> };
}

for (const file of FILES) {
  test(`${file}: docker-compose accepts it, and refuses it without a node id of its own`, () => {
    resolved(file);
    const { AMI_GUARD_NODE_ID: _unset, ...withoutNode } = ENV;
    const r = spawnSync('docker-compose', ['-f', file, 'config', '-q'], { encoding: 'utf8', env: { ...withoutNode, HOSTNAME: 'pbx1' } });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /set AMI_GUARD_NODE_ID/);
    assert.doesNotMatch(readFileSync(file, 'utf8'), /\$\{?HOSTNAME/);
  });

  test(`${file}: a hardened host-network sidecar with NET_ADMIN only and known AMI_GUARD_* variables`, () => {
    const doc = parse(readFileSync(file, 'utf8')) as { services: Record<string, Service> };
    const sidecar = doc.services['ami-guard'];
    assert.ok(sidecar);
    assert.equal(sidecar.network_mode, 'host');
    assert.deepEqual(sidecar.cap_add, ['NET_ADMIN']);
    for (const [name, svc] of Object.entries(doc.services)) {
      assert.deepEqual(svc.cap_drop, ['ALL'], `${name}: cap_drop`);
      assert.equal(svc.read_only, true, `${name}: read_only`);
      assert.deepEqual(svc.security_opt, ['no-new-privileges:true'], `${name}: no-new-privileges`);
    }
    const known = envVars();
    for (const name of Object.keys(sidecar.environment ?? {})) assert.ok(known.has(name), `${name} is not a configuration variable`);
    const env = resolved(file).services['ami-guard']!.environment!;
    assert.equal(env.AMI_GUARD_NODE_ID, 'pbx9');
    // the password travels beside the URL, so it needs no URL-escaping and the URL carries none
    assert.match(env.AMI_GUARD_REDIS_URL ?? '', /^redis:\/\/[^@]+$/);
    assert.equal(env.AMI_GUARD_REDIS_PASSWORD, PASSWORD);
    // the state directory (the identity of the Redis last seen) on a named volume of its own
    const doc2 = parse(readFileSync(file, 'utf8')) as { volumes?: Record<string, unknown> };
    const state = (sidecar.volumes ?? []).find((v) => v.split(':')[1] === '/var/lib/ami-guard');
    assert.ok(state && state.split(':')[0]! in (doc2.volumes ?? {}), 'a named volume on /var/lib/ami-guard');
  });
}

test('pbx1: the sidecar starts after Redis without waiting for it; Redis binds loopback and the fleet address, never every interface', () => {
  const { redis, 'ami-guard': guard } = resolved(FILES[0]!).services;
  assert.deepEqual(guard!.depends_on, { redis: { condition: 'service_started' } });
  assert.equal(redis!.user, 'redis');
  const command = redis!.command!.join(' ');
  assert.match(command, /--bind 127\.0\.0\.1 127\.0\.0\.2\b/);
  assert.doesNotMatch(command, /0\.0\.0\.0|::(?!\d)/);
  assert.ok(!command.includes(PASSWORD), 'the password on the command line');
  assert.match(redis!.healthcheck!.test.join(' '), /redis-cli -h 127\.0\.0\.1 ping/);
});

test('pbx1: its Redis command, run for real, requires the password and never shows it in a command line', async (t) => {
  const { redis } = resolved(FILES[0]!).services;
  // what docker would run: `$$` is compose's escape for a `$` the container's shell expands
  const [sh, flag, script] = redis!.command!.map((a) => a.replaceAll('$$', '$'));
  assert.equal(`${sh} ${flag}`, 'sh -c');
  // the container's environment, handed over as docker does: never as an argument
  const env = { PATH: process.env.PATH, ...redis!.environment };
  assert.deepEqual(redis!.environment, { REDISCLI_AUTH: PASSWORD });

  // its own namespace: port 6379 is free there, and 127.0.0.2 (PBX1_ADDRESS here) is on its loopback
  const ns = await createNetns((fn) => t.after(fn));
  const dir = mkdtempSync(join(tmpdir(), 'ag-fleet-redis-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const inNs = (args: string[], withEnv: NodeJS.ProcessEnv = env) =>
    spawnSync('ip', ['netns', 'exec', ns.name, ...args], { encoding: 'utf8', timeout: 20_000, env: withEnv });
  const server = spawn('ip', ['netns', 'exec', ns.name, sh!, flag!, script!], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  server.stdout.on('data', (d: Buffer) => (log += d.toString()));
  server.stderr.on('data', (d: Buffer) => (log += d.toString()));
  t.after(() => {
    server.kill('SIGKILL');
  });
  assert.ok(spawnSync('redis-server', ['--version']).status === 0, 'redis-server not found: apt-get install -y redis-server');

  // the image's healthcheck, as docker runs it (a shell, with the container's environment)
  const health = () => inNs(['sh', '-c', redis!.healthcheck!.test[1]!]);
  await waitFor('Redis to pass its healthcheck', () => (health().status === 0 ? true : undefined), 15_000);
  await waitFor('its log', () => (/Ready to accept connections/.test(log) ? true : undefined), 5_000).catch(() =>
    assert.fail(`redis log: ${log}`),
  );
  assert.match(log, /Reading config from stdin/);

  for (const host of ['127.0.0.1', '127.0.0.2']) {
    assert.match(inNs(['redis-cli', '-h', host, 'ping'], { PATH: process.env.PATH }).stdout, /NOAUTH/, `${host} without the password`);
    assert.equal(inNs(['redis-cli', '-h', host, 'ping']).stdout.trim(), 'PONG', `${host} with the password`);
  }
  // not on every interface: another loopback address of the namespace is refused
  const other = inNs(['redis-cli', '-h', '127.0.0.3', 'ping']);
  assert.match(other.stdout + other.stderr, /refused/i);
  // what ps shows: no process's command line holds the password
  const comm = readFileSync(`/proc/${server.pid}/comm`, 'utf8').trim();
  assert.equal(comm, 'redis-server', 'sh exec-ed redis-server, so it is the process docker signals');
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    assert.ok(!cmdline.includes(PASSWORD), `pid ${pid} shows the password: ${cmdline.replaceAll('\0', ' ')}`);
  }
  // and AOF is on, in the working directory (the image's /data volume)
  assert.ok(readdirSync(dir).includes('appendonlydir'), readdirSync(dir).join(' '));
});
