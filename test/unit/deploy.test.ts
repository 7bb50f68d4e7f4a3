// The deployment files, checked without a container engine or systemd as PID 1: docker-compose.yml parsed (and
// validated by docker-compose itself), the Dockerfile read as text with its HEALTHCHECK command run for real, the
// systemd unit verified by systemd-analyze, and the unit's premise (nft works for an unprivileged user holding only
// CAP_NET_ADMIN) run in a throwaway network namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { parse } from 'yaml';
import { envVars, loadConfig, secretFields } from '../../src/config/load.js';
import { createNetns } from '../support/netns.js';
import { DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js';

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  network_mode?: string;
  cap_add?: string[];
  cap_drop?: string[];
  privileged?: boolean;
  read_only?: boolean;
  security_opt?: string[];
  user?: string;
  environment?: Record<string, string>;
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }> | string[];
}
interface Compose {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as Compose;
const dockerfile = readFileSync('Dockerfile', 'utf8');
const unit = readFileSync('scripts/ami-guard.service', 'utf8');
const defaults = loadConfig({ env: {} });

test('docker-compose.yml: Redis with AOF on a volume, the sidecar on the host network with NET_ADMIN only', () => {
  const { redis, 'ami-guard': guard } = compose.services;
  assert.ok(redis && guard, 'services redis and ami-guard');

  const command = Array.isArray(redis.command) ? redis.command.join(' ') : String(redis.command);
  assert.match(command, /--appendonly yes/);
  const data = (redis.volumes ?? []).find((v) => v.split(':')[1] === '/data');
  assert.ok(data, 'a volume on /data, where redis:7 keeps its AOF');
  assert.ok(compose.volumes && data.split(':')[0]! in compose.volumes, 'a named volume, not the container layer');

  assert.equal(guard.network_mode, 'host');
  assert.deepEqual(guard.cap_add, ['NET_ADMIN']);
  assert.deepEqual(guard.cap_drop, ['ALL']);
  assert.notEqual(guard.privileged, true);
  assert.ok(!/privileged:\s*true/.test(readFileSync('docker-compose.yml', 'utf8')));

  const known = envVars();
  const env = guard.environment ?? {};
  const names = Object.keys(env);
  assert.ok(names.length >= 10);
  for (const name of names) {
    assert.ok(name.startsWith('AMI_GUARD_'), `${name} is not an ami-guard variable`);
    assert.ok(known.has(name), `${name} is not a field of the configuration schema`);
  }
  // the image's HEALTHCHECK asks 127.0.0.1 on AMI_GUARD_HTTP_PORT
  assert.ok(['127.0.0.1', '0.0.0.0'].includes(env.AMI_GUARD_HTTP_HOST ?? defaults.http.host), 'the probe can reach the listener');
  assert.notEqual(Number(env.AMI_GUARD_HTTP_PORT ?? defaults.http.port), 0, '/healthz is on');
});

test('docker-compose config accepts the file, and refuses it without the AMI secret or the node id', (t) => {
  // HOSTNAME set as bash sets it (unexported in a real shell): the file must not depend on it either way
  const run = (env: NodeJS.ProcessEnv) =>
    spawnSync('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    });
  const ok = run({ AMI_GUARD_AMI_SECRET: 'x', AMI_GUARD_NODE_ID: 'pbx7' });
  if ((ok.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    assert.fail('docker-compose not found: apt-get install -y docker-compose');
  }
  assert.equal(ok.status, 0, ok.stderr);
  const noSecret = run({ AMI_GUARD_NODE_ID: 'pbx7' });
  assert.notEqual(noSecret.status, 0);
  assert.match(noSecret.stderr, /set AMI_GUARD_AMI_SECRET \(the secret of the ami-guard user/);
  // every PBX called itself pbx1 when the file read ${HOSTNAME:-pbx1}: now the name must be given
  const noNode = run({ AMI_GUARD_AMI_SECRET: 'x', HOSTNAME: 'pbx9' });
  assert.notEqual(noNode.status, 0);
  assert.match(noNode.stderr, /set AMI_GUARD_NODE_ID/);
  t.diagnostic('docker-compose config: valid; the image itself is not built here (no engine)');
});

test('docker-compose.yml: both services hardened, the sidecar waits for a healthy Redis, no name from $HOSTNAME', () => {
  const text = readFileSync('docker-compose.yml', 'utf8');
  assert.doesNotMatch(text, /\$\{?HOSTNAME/);
  for (const [name, svc] of Object.entries(compose.services)) {
    assert.deepEqual(svc.cap_drop, ['ALL'], `${name}: cap_drop`);
    assert.equal(svc.read_only, true, `${name}: read_only`);
    assert.deepEqual(svc.security_opt, ['no-new-privileges:true'], `${name}: no-new-privileges`);
  }
  const { redis, 'ami-guard': guard } = compose.services;
  // with every capability dropped, the image's entrypoint cannot chown /data nor switch users: start as redis
  assert.equal(redis!.user, 'redis');
  assert.match(redis!.healthcheck?.test.join(' ') ?? '', /redis-cli -h 127\.0\.0\.1 ping/);
  // started after Redis, never held back by it: without Redis it bans on its local fallback
  assert.deepEqual(guard!.depends_on, { redis: { condition: 'service_started' } });
  // the state directory on a named volume: the root filesystem is read-only, and a restart must not forget it
  const state = (guard!.volumes ?? []).find((v) => v.split(':')[1] === defaults.store.stateDir);
  assert.ok(state && state.split(':')[0]! in (compose.volumes ?? {}), 'a named volume on store.stateDir');
  assert.match(dockerfile, new RegExp(`^VOLUME \\["${defaults.store.stateDir}"\\]$`, 'm'));
  assert.match(guard!.environment?.AMI_GUARD_NODE_ID ?? '', /^\$\{AMI_GUARD_NODE_ID:\?/);
});

test('.env (where the secrets live) is neither committed nor sent to the image build', () => {
  for (const path of ['.env', 'examples/fleet/.env']) {
    assert.equal(spawnSync('git', ['check-ignore', '-q', path]).status, 0, `git does not ignore ${path}`);
  }
  assert.ok(readFileSync('.dockerignore', 'utf8').split('\n').includes('.env'), '.dockerignore lacks .env');
});

test('Dockerfile: a current Node LTS (even major past 20), while package.json still accepts Node 20', () => {
  const images = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]!);
  assert.ok(images.length >= 2);
  for (const image of images) {
    const m = /^node:(\d+)-[a-z]+-slim$/.exec(image);
    assert.ok(m, `${image}: a slim official node image with a pinned major and Debian release`);
    const major = Number(m[1]);
    assert.ok(major > 20 && major % 2 === 0, `${image}: Node 20 is past its end of life; LTS lines are the even majors`);
  }
  assert.equal(new Set(images).size, 1, 'build and runtime on the same Node');
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string } };
  assert.equal(pkg.engines.node, '>=20');
});

test('Dockerfile: multi-stage, production dependencies only, nftables, a HEALTHCHECK on /healthz', () => {
  const stages = dockerfile.split(/^FROM /m).slice(1);
  assert.ok(stages.length >= 2, 'multi-stage');
  const runtime = stages[stages.length - 1]!.split('\n')
    .filter((l) => !l.trim().startsWith('#'))
    .join('\n');
  assert.match(stages[0]!, /npm ci/);
  assert.match(runtime, /npm ci --omit=dev/);
  assert.match(runtime, /apt-get install[^\n]*nftables/);
  assert.match(runtime, /apt-get install[^\n]*python3/, 'the persistent nft writer runs on python3');
  assert.match(runtime, /COPY --from=build/);
  assert.doesNotMatch(runtime, /\bcurl\b|\bwget\b/);
  const healthcheck = healthcheckCommand();
  assert.equal(healthcheck[0], 'node');
  assert.match(healthcheck.join(' '), /\/healthz/);
  assert.match(healthcheck.join(' '), new RegExp(`process\\.env\\.AMI_GUARD_HTTP_PORT\\|\\|${defaults.http.port}\\b`));
  assert.ok(envVars().has('AMI_GUARD_HTTP_PORT'));
});

test('the daemon runs with the heap limits of src/cli/node-flags.ts wherever it is started: the bin shebang, the image', () => {
  const shebang = readFileSync('src/cli/main.ts', 'utf8').split('\n')[0]!;
  assert.equal(shebang, `#!/usr/bin/env -S node ${DAEMON_NODE_FLAGS.join(' ')}`);
  // the compiled bin keeps it, and env -S runs it (coreutils >= 8.30; Debian 12 has 9.1)
  assert.equal(readFileSync('dist/src/cli/main.js', 'utf8').split('\n')[0], shebang);
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile);
  assert.ok(entrypoint, 'an exec-form ENTRYPOINT');
  assert.deepEqual(JSON.parse(entrypoint[1]!), ['node', ...DAEMON_NODE_FLAGS, '/app/dist/src/cli/main.js']);
  const r = spawnSync('dist/src/cli/main.js', ['--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test('the HEALTHCHECK command exits 0 on a 200 from /healthz on the configured port, 1 on a 503 or no listener', async (t) => {
  let status = 200;
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? '');
    res.writeHead(status, { 'Content-Type': 'application/json' }).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  t.after(() => (server.listening ? stop() : undefined));
  const port = String((server.address() as { port: number }).port);
  const [node, ...args] = healthcheckCommand();
  assert.equal(node, 'node');
  assert.equal(await probe(args, { AMI_GUARD_HTTP_PORT: port }), 0);
  status = 503;
  assert.equal(await probe(args, { AMI_GUARD_HTTP_PORT: port }), 1);
  await stop();
  assert.equal(await probe(args, { AMI_GUARD_HTTP_PORT: port }), 1);
  assert.deepEqual(paths, ['/healthz', '/healthz']);
});

test('ami-guard.service: hardened, CAP_NET_ADMIN only, and systemd-analyze has nothing to say', (t) => {
  const keys = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) keys.set(m[1]!, [...(keys.get(m[1]!) ?? []), m[2]!]);
  }
  const one = (k: string): string | undefined => keys.get(k)?.[0];
  assert.equal(one('ExecStart'), '/usr/bin/env ami-guard run --config /etc/ami-guard/config.json');
  assert.equal(one('EnvironmentFile'), '-/etc/ami-guard/env');
  // issue 14: SIGHUP reloads (it used to kill the daemon), nothing leaves it down, and nftables.service's flush comes first
  assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.equal(one('Restart'), 'always');
  assert.equal(one('StartLimitIntervalSec'), '0');
  assert.ok(one('After')?.split(' ').includes('nftables.service'), 'After=nftables.service');
  // the control socket's home: writable under ProtectSystem=strict, reachable by root only
  assert.equal(one('RuntimeDirectory'), 'ami-guard');
  assert.equal(one('RuntimeDirectoryMode'), '0700');
  assert.equal(defaults.control.socket, '/run/ami-guard/control.sock', "the daemon's default socket is in the RuntimeDirectory");
  // LoadCredential= examples name secret fields the loader looks for in $CREDENTIALS_DIRECTORY
  const credentials = [...unit.matchAll(/^#?LoadCredential=([^:]+):/gm)].map((m) => m[1]);
  assert.deepEqual(credentials, ['ami.secret', 'redis.password', 'notify.webhook.url']);
  for (const c of credentials)
    assert.ok(
      secretFields().some((f) => f.path === c),
      `${c} is a secret field`,
    );
  assert.equal(one('DynamicUser'), 'yes');
  assert.equal(one('CapabilityBoundingSet'), 'CAP_NET_ADMIN');
  assert.equal(one('AmbientCapabilities'), 'CAP_NET_ADMIN');
  assert.equal(one('ProtectSystem'), 'strict');
  assert.equal(one('ProtectHome'), 'yes');
  assert.equal(one('NoNewPrivileges'), 'yes');
  assert.equal(one('PrivateTmp'), 'yes');
  assert.deepEqual(one('RestrictAddressFamilies')?.split(' ').sort(), ['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
  assert.equal(keys.get('User'), undefined, 'a DynamicUser, not a named one');
  // store.stateDir's default, kept by systemd for the DynamicUser across restarts
  assert.equal(`/var/lib/${one('StateDirectory')}`, defaults.store.stateDir);
  assert.equal(one('StateDirectoryMode'), '0700');

  const verify = spawnSync('systemd-analyze', ['verify', 'scripts/ami-guard.service'], { encoding: 'utf8', timeout: 60_000 });
  if ((verify.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    t.diagnostic('systemd-analyze not found: the unit was checked as text only');
    return;
  }
  // verify exits 0 on unknown keys and bad values, but says so on stderr
  assert.equal(verify.status, 0, verify.stderr);
  assert.equal(verify.stderr.trim(), '', 'systemd-analyze verify warnings');
  // the exposure score systemd computes from the sandboxing options: 0 (locked down) to 100
  const security = spawnSync('systemd-analyze', ['security', '--offline=true', '--threshold=40', 'scripts/ami-guard.service'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(security.status, 0, security.stdout.split('\n').slice(-3).join('\n'));
  t.diagnostic(security.stdout.trim().split('\n').pop() ?? '');
});

test('nft works for an unprivileged user holding only CAP_NET_ADMIN (what the unit grants)', async (t) => {
  const ns = await createNetns((fn) => t.after(fn));
  // the CLI's way (an nft process per call) and the daemon's (the persistent writer child, python3 + libnftables)
  const script = (persistent: boolean, address: string): string => `
    import { NftFirewall } from '${process.cwd()}/dist/src/firewall/nft.js';
    import { parseTarget } from '${process.cwd()}/dist/src/net/ip.js';
    const fw = new NftFirewall({ persistent: ${String(persistent)} });
    await fw.init();
    await fw.add([{ target: parseTarget('${address}'), timeoutMs: 60000 }]);
    const elements = (await fw.list()).map((e) => e.address).sort();
    await fw.shutdown();
    console.log(JSON.stringify({ uid: process.getuid(), elements }));`;
  const setpriv = [
    'setpriv',
    '--reuid=65534',
    '--regid=65534',
    '--clear-groups',
    '--inh-caps=-all,+net_admin',
    '--ambient-caps=-all,+net_admin',
    '--bounding-set=-all,+net_admin',
    '--no-new-privs',
  ];
  const granted = await ns.exec(setpriv[0]!, [
    ...setpriv.slice(1),
    process.execPath,
    '--input-type=module',
    '-e',
    script(false, '198.51.100.9'),
  ]);
  assert.equal(granted.code, 0, granted.stderr);
  assert.deepEqual(JSON.parse(granted.stdout), { uid: 65534, elements: ['198.51.100.9'] });
  const writer = await ns.exec(setpriv[0]!, [
    ...setpriv.slice(1),
    process.execPath,
    '--input-type=module',
    '-e',
    script(true, '198.51.100.10'),
  ]);
  assert.equal(writer.code, 0, writer.stderr);
  assert.deepEqual(JSON.parse(writer.stdout), { uid: 65534, elements: ['198.51.100.10', '198.51.100.9'] });

  // and without the capability it is refused: the capability is what makes it work, not something else
  const without = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all'];
  const refused = await ns.exec(without[0]!, [...without.slice(1), 'nft', 'list', 'ruleset']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /Operation not permitted/);
});

/** the exec-form CMD of the Dockerfile's HEALTHCHECK */
function healthcheckCommand(): string[] {
  const m = /^HEALTHCHECK [^\n]*?(?:\\\n[^\n]*?)*CMD (\[.*\])$/m.exec(dockerfile);
  assert.ok(m, 'a HEALTHCHECK with an exec-form CMD');
  return JSON.parse(m[1]!) as string[];
}

/** runs node with the probe's arguments; asynchronously, since the server it asks lives in this process */
function probe(args: string[], env: NodeJS.ProcessEnv): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: 'ignore' });
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('exit', (code) => {
      clearTimeout(killer);
      resolve(code);
    });
  });
}
