// Where the configuration comes from: the default file, secrets from files (AMI_GUARD_…_FILE, systemd credentials,
// Docker secrets), the secret variables taken out of the environment, and what a reload may change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, chooseConfigFile, loadConfig, secretFields, takeSecretEnv } from '../../src/config/load.js';
import { planReload } from '../../src/config/reload.js';

const dir = mkdtempSync(join(tmpdir(), 'ag-sources-'));
const none = join(dir, 'no-docker-secrets');
function file(name: string, content: string): string {
  const p = join(dir, name);
  writeFileSync(p, content, { mode: 0o600 });
  return p;
}

test('the secret fields are the sensitive ones of the schema, each with a _FILE variable', () => {
  assert.deepEqual(
    secretFields().map((f) => `${f.path} ${f.env}`),
    [
      'ami.secret AMI_GUARD_AMI_SECRET',
      'redis.url AMI_GUARD_REDIS_URL',
      'redis.password AMI_GUARD_REDIS_PASSWORD',
      'blocklists.apiban.key AMI_GUARD_BLOCKLISTS_APIBAN_KEY',
      'notify.webhook.url AMI_GUARD_NOTIFY_WEBHOOK_URL',
    ],
  );
});

test('AMI_GUARD_<PATH>_FILE: the file holds the value, a trailing newline dropped; both ways at once is refused', () => {
  const secret = file('ami-secret', 'fr0m-a-f1le\n');
  const warnings: string[] = [];
  const c = loadConfig({
    env: { AMI_GUARD_AMI_SECRET_FILE: secret, AMI_GUARD_REDIS_PASSWORD_FILE: file('pw', 'p@ss\r\n') },
    secretsDir: none,
    warn: (m) => warnings.push(m),
  });
  assert.equal(c.ami.secret, 'fr0m-a-f1le');
  assert.equal(c.redis.password, 'p@ss');
  assert.deepEqual(warnings, [], 'the _FILE variables are known');
  assert.throws(
    () => loadConfig({ env: { AMI_GUARD_AMI_SECRET: 'x', AMI_GUARD_AMI_SECRET_FILE: secret }, secretsDir: none }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.message, 'AMI_GUARD_AMI_SECRET and AMI_GUARD_AMI_SECRET_FILE are both set: give the secret one way');
      return true;
    },
  );
});

test('a secret file that is missing, empty, a directory or unreadable is named, never its content', () => {
  const cases: Array<[string, RegExp]> = [
    [join(dir, 'absent'), /AMI_GUARD_AMI_SECRET_FILE names .*absent, which does not exist$/],
    [file('empty', '\n'), /AMI_GUARD_AMI_SECRET_FILE names .*empty, which is empty$/],
    [dir, /which is not a regular file$/],
    [file('huge', 'x'.repeat(70_000)), /which is larger than a secret can be/],
  ];
  for (const [path, re] of cases) {
    assert.throws(() => loadConfig({ env: { AMI_GUARD_AMI_SECRET_FILE: path }, secretsDir: none }), re);
  }
  const locked = file('locked', 'top-s3cret');
  chmodSync(locked, 0o000);
  // root reads it anyway; as anyone else the message names the file, not what is in it
  if (process.getuid?.() !== 0)
    assert.throws(() => loadConfig({ env: { AMI_GUARD_AMI_SECRET_FILE: locked }, secretsDir: none }), /cannot read/);
  // a value that fails validation is refused without being shown
  assert.throws(
    () => loadConfig({ env: { AMI_GUARD_REDIS_URL_FILE: file('bad-url', 'http://u:leaked-pw@x') }, secretsDir: none }),
    (err: unknown) => {
      assert.match((err as Error).message, /redis\.url/);
      assert.doesNotMatch((err as Error).message, /leaked-pw/);
      return true;
    },
  );
});

test('systemd credentials ($CREDENTIALS_DIRECTORY/<field>) and Docker secrets (/run/secrets/<field>), in that order, under the variables', () => {
  const creds = join(dir, 'credentials');
  const docker = join(dir, 'docker-secrets');
  mkdirSync(creds);
  mkdirSync(docker);
  writeFileSync(join(creds, 'ami.secret'), 'from-systemd\n');
  writeFileSync(join(docker, 'ami.secret'), 'from-docker\n');
  writeFileSync(join(docker, 'redis.password'), 'docker-pw');
  const configFile = file('with-secret.json', JSON.stringify({ ami: { secret: 'from-the-file' } }));
  const c = loadConfig({ file: configFile, env: { CREDENTIALS_DIRECTORY: creds }, secretsDir: docker });
  assert.equal(c.ami.secret, 'from-systemd', 'a credential wins over the file and over a Docker secret');
  assert.equal(c.redis.password, 'docker-pw');
  assert.equal(loadConfig({ env: {}, secretsDir: docker }).ami.secret, 'from-docker');
  assert.equal(
    loadConfig({ env: { CREDENTIALS_DIRECTORY: creds, AMI_GUARD_AMI_SECRET: 'from-env' }, secretsDir: docker }).ami.secret,
    'from-env',
  );
  assert.equal(
    loadConfig({ env: { CREDENTIALS_DIRECTORY: creds, AMI_GUARD_AMI_SECRET_FILE: file('s2', 'named') }, secretsDir: docker }).ami.secret,
    'named',
  );
  assert.equal(loadConfig({ file: configFile, env: {}, secretsDir: none }).ami.secret, 'from-the-file');
});

test('a _FILE variable for a field that is not a secret is ignored with a warning', () => {
  const warnings: string[] = [];
  const c = loadConfig({ env: { AMI_GUARD_AMI_HOST_FILE: file('host', '10.9.9.9') }, secretsDir: none, warn: (m) => warnings.push(m) });
  assert.equal(c.ami.host, '127.0.0.1');
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /^AMI_GUARD_AMI_HOST_FILE is ignored: only secrets can be read from files \(AMI_GUARD_AMI_SECRET_FILE, /);
});

test('takeSecretEnv: the secret variables leave the environment, a snapshot keeps them for a reload', () => {
  const env: NodeJS.ProcessEnv = {
    AMI_GUARD_AMI_SECRET: 's',
    AMI_GUARD_REDIS_URL: 'redis://:pw@h:1/0',
    AMI_GUARD_POLICY_MAXRETRY: '3',
    PATH: '/bin',
  };
  const snapshot = takeSecretEnv(env);
  assert.deepEqual(env, { AMI_GUARD_POLICY_MAXRETRY: '3', PATH: '/bin' });
  assert.equal(snapshot.AMI_GUARD_AMI_SECRET, 's');
  assert.equal(loadConfig({ env: snapshot, secretsDir: none }).ami.secret, 's');
});

test('the configuration file: --config, else $AMI_GUARD_CONFIG, else the default when it exists, else none', () => {
  const present = file('default.json', '{}');
  assert.deepEqual(chooseConfigFile('/x.json', { AMI_GUARD_CONFIG: '/y.json' }, present), { file: '/x.json', how: 'option' });
  assert.deepEqual(chooseConfigFile(undefined, { AMI_GUARD_CONFIG: '/y.json' }, present), { file: '/y.json', how: 'environment' });
  assert.deepEqual(chooseConfigFile(undefined, {}, present), { file: present, how: 'default' });
  assert.deepEqual(chooseConfigFile(undefined, {}, join(dir, 'nope.json')), { file: undefined, how: 'none' });
  const warnings: string[] = [];
  loadConfig({ env: { AMI_GUARD_CONFIG: present }, secretsDir: none, warn: (m) => warnings.push(m) });
  assert.deepEqual(warnings, [], 'AMI_GUARD_CONFIG is not taken for an unknown field');
});

test('control.socket: an absolute path that fits a socket address, or empty', () => {
  assert.equal(loadConfig({ env: {}, secretsDir: none }).control.socket, '/run/ami-guard/control.sock');
  assert.equal(loadConfig({ env: { AMI_GUARD_CONTROL_SOCKET: '' }, secretsDir: none }).control.socket, '');
  for (const bad of ['relative/control.sock', `/${'x'.repeat(120)}`]) {
    assert.throws(
      () => loadConfig({ env: { AMI_GUARD_CONTROL_SOCKET: bad }, secretsDir: none }),
      /control\.socket: must be empty or an absolute path/,
    );
  }
});

test('a reload takes the policy and the log level, and names what only a restart changes', () => {
  const running = loadConfig({ env: { AMI_GUARD_AMI_SECRET: 'old' }, secretsDir: none });
  const loaded = loadConfig({
    env: {
      AMI_GUARD_AMI_SECRET: 'new',
      AMI_GUARD_AMI_HOST: '10.0.0.9',
      AMI_GUARD_POLICY_MAXRETRY: '3',
      AMI_GUARD_POLICY_IGNOREIP: '127.0.0.0/8,::1,198.51.100.0/24',
      AMI_GUARD_LOG_LEVEL: 'debug',
      AMI_GUARD_REDIS_URL: 'redis://10.0.0.1:6379/0',
    },
    secretsDir: none,
  });
  const plan = planReload(running, loaded);
  assert.deepEqual([...plan.applied].sort(), ['log.level', 'policy.ignoreip', 'policy.maxretry']);
  assert.deepEqual([...plan.restartNeeded].sort(), ['ami.host', 'ami.secret', 'redis.url']);
  assert.equal(plan.next.policy.maxretry, 3);
  assert.deepEqual(plan.next.policy.ignoreip, ['127.0.0.0/8', '::1', '198.51.100.0/24']);
  assert.equal(plan.next.log.level, 'debug');
  assert.equal(plan.next.ami.host, '127.0.0.1', 'kept until a restart');
  assert.equal(plan.next.ami.secret, 'old');
  assert.equal(running.policy.maxretry, 5, 'the running configuration object is not changed');
  assert.deepEqual(planReload(running, running), { next: running, applied: [], restartNeeded: [] });
});
