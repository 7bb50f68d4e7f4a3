// SIGHUP reloads the configuration of the real daemon while a recorded attack replays: the new policy decides the
// next event, bans, counts in flight and the AMI session stay, fields that need a restart are named and keep their
// running values; an invalid file changes nothing and says why, in the log and in `ami-guard status`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { startBed, markerEvents } from '../support/bed.js';
import { startRedisServer } from '../support/redis-server.js';
import { waitFor } from '../support/netns.js';
import { cli } from '../support/cli.js';
import { writeConfig } from '../support/daemon-process.js';

const A = '198.51.100.20'; // guesses before the reload and after it
const B = '198.51.100.30'; // ignore-listed by the reload
const C = '198.51.100.40'; // an attacker after a failed reload

test('SIGHUP with a valid file, then an invalid one, while an attack replays', async (t) => {
  const redis = await startRedisServer();
  t.after(() => redis.stop());
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'register-bruteforce', speed: 2, redisUrl: redis.url });
  const original = JSON.parse(readFileSync(bed.configFile, 'utf8')) as Record<string, Record<string, unknown>>;
  // the CLI reads a copy: the daemon's own file is broken on purpose below (a CLI reading it would say so and stop)
  const cliConfig = writeConfig(original);
  const run = (...args: string[]) => cli([...args, '--config', cliConfig]);
  const rewrite = (text: string): void => writeFileSync(bed.configFile, text);
  const hup = (): boolean => bed.daemon.child.kill('SIGHUP');
  await bed.replay.loggedIn;

  // three guesses from A are counted before the reload
  bed.replay.inject(markerEvents(3, A));
  await waitFor("A's three failures in the store", async () => {
    const s = JSON.parse((await run('show', A, '--json')).stdout) as { failures: unknown[] };
    return s.failures.length === 3 ? true : undefined;
  });

  // maxretry 5 → 4, B ignore-listed, more logging; the AMI port changes too, which needs a restart
  rewrite(
    JSON.stringify({
      ...original,
      ami: { ...original.ami, port: 1 },
      policy: { maxretry: 4, ignoreip: ['127.0.0.0/8', '::1', `${B}/32`] },
      log: { level: 'debug' },
    }),
  );
  assert.ok(hup());
  const reloaded = await bed.daemon.waitForLog((l) => l.msg === 'configuration reloaded');
  assert.deepEqual([...(reloaded.applied as string[])].sort(), ['log.level', 'policy.ignoreip', 'policy.maxretry']);
  const warned = await bed.daemon.waitForLog((l) => l.level === 40 && /can only change with a restart/.test(l.msg));
  assert.deepEqual(warned.fields, ['ami.port']);

  // the next events: B is ignored whatever it sends, A's fourth guess bans it (three kept + one, at the new maxretry)
  bed.replay.inject(markerEvents(6, B));
  bed.replay.inject(markerEvents(1, A));
  const banned = await bed.settle(4);
  assert.ok(banned.includes(A), `A banned at its 4th guess across the reload: ${banned.join(' ')}`);
  assert.ok(!banned.includes(B), 'B is ignore-listed from the reload on');
  assert.ok(banned.includes('198.18.0.11'), 'the recorded attacker is banned, the reload in the middle of its attack');
  const a = JSON.parse((await run('show', A, '--json')).stdout) as { ban: { count: number } };
  assert.equal(a.ban.count, 4);
  assert.equal(bed.replay.connections, 1, 'one AMI session throughout: ami.port kept its running value');
  assert.ok(!bed.daemon.logs.some((l) => /AMI reconnected|AMI connection lost/.test(l.msg)));
  // log.level reached the parts' own loggers (pino's children keep the level they were born with)
  const at = bed.daemon.logs.indexOf(reloaded);
  assert.ok(
    bed.daemon.logs.slice(0, at).every((l) => l.level >= 30),
    'nothing at debug level before, though the CLI asked',
  );
  assert.equal((await run('status')).code, 0);
  await bed.daemon.waitForLog((l) => l.level === 20 && l.component === 'control' && l.msg === 'control request');

  const status = JSON.parse((await run('status', '--json')).stdout) as {
    daemon: { reload: { ok: boolean; applied: string[]; restartNeeded: string[] } };
  };
  assert.equal(status.daemon.reload.ok, true);
  assert.deepEqual(status.daemon.reload.restartNeeded, ['ami.port']);

  // an invalid file: broken JSON, then a bad value; each keeps the running configuration and says why
  const before = bed.daemon.logs.length;
  rewrite('{ "policy": { "maxretry": 3 ');
  assert.ok(hup());
  const failed = await bed.daemon.waitForLog(
    (l) => l.level === 50 && l.msg === 'configuration reload failed: the running configuration stays',
  );
  assert.match(String(failed.err), /is not valid JSON at line 1, column \d+/);
  const human = await run('status');
  assert.match(
    human.stdout,
    /last reload \S+ ago: FAILED, the configuration in force is the one before: config file \S+ is not valid JSON at line 1/,
  );
  rewrite(JSON.stringify({ ...original, policy: { maxretry: 0 } }));
  assert.ok(hup());
  await waitFor('the second refusal', () =>
    bed.daemon.logs.slice(before).filter((l) => l.level === 50 && /reload failed/.test(l.msg)).length === 2 ? true : undefined,
  );
  const second = bed.daemon.logs.slice(before).filter((l) => l.level === 50 && /reload failed/.test(l.msg))[1]!;
  assert.match(String(second.err), /policy\.maxretry: must be a positive integer/);
  const s2 = JSON.parse((await run('status', '--json')).stdout) as { daemon: { reload: { ok: boolean; error: string } } };
  assert.equal(s2.daemon.reload.ok, false);

  // what ran before the failed reloads still holds: maxretry 4, B ignored
  bed.replay.inject(markerEvents(5, B));
  bed.replay.inject(markerEvents(4, C));
  await waitFor('C banned at 4', async () => ((await bed.elements()).includes(C) ? true : undefined), 20_000);
  assert.ok(!(await bed.elements()).includes(B));
  assert.equal(bed.daemon.child.exitCode, null, 'the daemon runs on');
  assert.equal(bed.replay.connections, 1);
});
