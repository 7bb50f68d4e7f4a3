// Quick-start demo: the real `ami-guard run` daemon against a real recorded attack. A replay AMI server plays the
// recording as Asterisk sent it; Redis is used if redis-server is installed (else the embedded store); nft works in a
// private network namespace, so the host's firewall is never touched. Usage: demo [recording] [--speed N]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createNetns } from '../test/support/netns.js';
import { startRedisServer, type RedisServer } from '../test/support/redis-server.js';
import { startReplayServer } from '../test/support/replay-ami-server.js';
import { startDaemon, writeConfig, type LogLine } from '../test/support/daemon-process.js';
import { AMI_SECRET, AMI_USER, FIXTURES } from '../test/support/bed.js';

const args = process.argv.slice(2);
const speedAt = args.indexOf('--speed');
const speed = speedAt >= 0 ? Number(args[speedAt + 1]) : 2;
const name = args.find((a, i) => !a.startsWith('--') && i !== speedAt + 1) ?? 'register-bruteforce';
const recording = join(FIXTURES, `${name}.jsonl`);
if (!existsSync(recording)) {
  console.error(
    `no recording ${recording}; try one of: register-bruteforce, extension-scan, ipv6-attacker, acl-violation, ami-bruteforce, legit-phone`,
  );
  process.exit(2);
}

const cleanups: Array<() => Promise<void>> = [];
const cleanup = async (): Promise<void> => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
};

function show(l: LogLine): void {
  const time = String(l.time ?? '').slice(11, 23);
  if (l.event === 'ban') {
    console.log(
      `${time}  BAN    ${String(l.address).padEnd(16)} ${String(l.reason)}: ${l.count} × ${JSON.stringify(l.kinds)} for ${l.duration}`,
    );
  } else if (l.level >= 40 || /starting|reconciled|AMI|stopp/.test(l.msg)) {
    console.log(`${time}  ${l.level >= 50 ? 'ERROR' : l.level >= 40 ? 'WARN ' : 'info '}  ${l.msg}`);
  }
}

async function main(): Promise<void> {
  const ns = await createNetns((fn) => cleanups.push(fn));
  let redis: RedisServer | undefined;
  try {
    redis = await startRedisServer();
    cleanups.push(() => redis!.stop());
  } catch {
    console.log('redis-server not found: the daemon will use its embedded store');
  }
  const replay = await startReplayServer({ recording, username: AMI_USER, secret: AMI_SECRET, speed });
  cleanups.push(() => replay.stop());
  console.log(`replaying ${name} (recorded from a real Asterisk under attack) at ${speed}x; nft in namespace ${ns.name}\n`);

  const config = writeConfig({
    ami: { host: '127.0.0.1', port: replay.port, username: AMI_USER, secret: AMI_SECRET },
    redis: { url: redis?.url ?? '' },
    node: { id: 'demo-pbx' },
    nft: { netns: ns.name },
  });
  const daemon = startDaemon(config);
  cleanups.push(async () => {
    await daemon.stop();
  });
  let shown = 0;
  const pump = setInterval(() => {
    while (shown < daemon.logs.length) show(daemon.logs[shown++]!);
  }, 50);
  await replay.playDone;
  await new Promise((r) => setTimeout(r, 1500));
  clearInterval(pump);
  while (shown < daemon.logs.length) show(daemon.logs[shown++]!);
  console.log(`\n${replay.sent.events} events replayed. The kernel now holds (nft list table inet ami_guard, in ${ns.name}):\n`);
  const r = spawnSync('ip', ['netns', 'exec', ns.name, 'nft', 'list', 'table', 'inet', 'ami_guard'], { encoding: 'utf8' });
  console.log(r.stdout || r.stderr);
}

process.on('SIGINT', () => {
  void cleanup().then(() => process.exit(130));
});
main().then(
  () => cleanup(),
  async (err: unknown) => {
    console.error(`demo failed: ${(err as Error).message}`);
    await cleanup();
    process.exit(1);
  },
);
