// Secrets from files: the AMI secret from AMI_GUARD_AMI_SECRET_FILE, the Redis password from a systemd credential
// ($CREDENTIALS_DIRECTORY/redis.password). The real daemon logs in with them, and neither they nor a secret given as a
// plain variable appear in its log, in `status`, after a reload, or in the environment of the processes it starts
// (read from /proc while they run; the CLI's nft runs through a wrapper that records its environment).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBed, AMI_SECRET } from '../support/bed.js';
import { startRedisServer } from '../support/redis-server.js';
import { writeConfig } from '../support/daemon-process.js';
import { cli } from '../support/cli.js';

const REDIS_PASSWORD = 'cred-pw-5e0d2b71';
const WEBHOOK_TOKEN = 'hook-token-77aa31';

test('secrets from a _FILE variable and from $CREDENTIALS_DIRECTORY: used, and never in logs, status or children', async (t) => {
  const redis = await startRedisServer({ password: REDIS_PASSWORD });
  t.after(() => redis.stop());
  const dir = mkdtempSync(join(tmpdir(), 'ag-secrets-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const creds = join(dir, 'credentials');
  const dumps = join(dir, 'env');
  mkdirSync(creds, { mode: 0o700 });
  mkdirSync(dumps);
  writeFileSync(join(creds, 'redis.password'), `${REDIS_PASSWORD}\n`, { mode: 0o600 });
  const amiSecretFile = join(dir, 'ami-secret');
  writeFileSync(amiSecretFile, `${AMI_SECRET}\n`, { mode: 0o600 });
  // every nft the daemon or the CLI starts records the environment it was given, then runs the real nft
  const wrapper = join(dir, 'nft-wrapper');
  writeFileSync(wrapper, `#!/bin/sh\nenv > "${dumps}/env.$$"\nexec nft "$@"\n`);
  chmodSync(wrapper, 0o755);

  const env = {
    AMI_GUARD_AMI_SECRET_FILE: amiSecretFile,
    CREDENTIALS_DIRECTORY: creds,
    // a secret given the plain way: the daemon reads it, its children never see it
    AMI_GUARD_NOTIFY_WEBHOOK_URL: `http://hook:${WEBHOOK_TOKEN}@127.0.0.1:9/hook`,
  };
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'register-bruteforce',
    // no secret in the file, no password in the URL: they can only come from the files
    // the persistent nft writer, as deployed: its environment is read from /proc while it runs
    redisUrl: `redis://127.0.0.1:${redis.port}/0`,
    config: { ami: { secret: '' }, log: { level: 'debug' } },
    env,
  });
  assert.deepEqual(await bed.settle(), ['198.18.0.11'], 'logged in to AMI and to Redis with the secrets from the files');
  const pid = bed.daemon.child.pid!;
  const kids = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(pid);
      } catch {
        return false; // gone meanwhile
      }
    });
  assert.ok(kids.length >= 1, 'the daemon runs a child (the nft writer)');
  const kidEnvs = kids.map((k) => readFileSync(`/proc/${k}/environ`, 'utf8').replaceAll('\u0000', '\n'));
  bed.daemon.child.kill('SIGHUP');
  await bed.daemon.waitForLog((l) => /configuration reloaded/.test(l.msg));

  const status = await cli(['status', '--config', bed.configFile]);
  const statusJson = await cli(['status', '--json', '--config', bed.configFile]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /redis {3}redis:\/\/127\.0\.0\.1:\d+\/0: reachable/);
  // the CLI straight to Redis (no daemon to ask), the password from the environment: its nft children never see it
  const direct = writeConfig({
    redis: { url: `redis://127.0.0.1:${redis.port}/0` },
    nft: { path: wrapper, writer: 'spawn', netns: bed.ns.name },
    control: { socket: '' },
  });
  const listed = await cli(['ban', '198.51.100.8', '--config', direct], { AMI_GUARD_REDIS_PASSWORD: REDIS_PASSWORD });
  assert.equal(listed.code, 0, listed.stderr);
  await bed.daemon.stop();

  const children = [...kidEnvs, ...readdirSync(dumps).map((f) => readFileSync(join(dumps, f), 'utf8'))];
  assert.ok(children.length >= 2, `the daemon's child and the CLI's nft (${children.length})`);
  const texts: Array<[string, string]> = [
    ["the daemon's output", bed.daemon.output()],
    ['status', status.stdout + status.stderr],
    ['status --json', statusJson.stdout],
    ['the CLI', listed.stdout + listed.stderr],
    ...children.map((c, i): [string, string] => [`the environment of child #${i + 1}`, c]),
  ];
  for (const [where, text] of texts) {
    for (const secret of [AMI_SECRET, REDIS_PASSWORD, WEBHOOK_TOKEN]) assert.ok(!text.includes(secret), `a secret in ${where}`);
  }
  for (const c of children) {
    for (const name of ['AMI_GUARD_NOTIFY_WEBHOOK_URL=', 'AMI_GUARD_REDIS_PASSWORD=', 'AMI_GUARD_AMI_SECRET='])
      assert.ok(!c.includes(name), `${name} reached nft`);
  }
});
