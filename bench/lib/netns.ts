// Namespaces for benchmarks: test/support/netns.ts's Netns, named `agbench-<random>` so that one left behind by a
// killed run is told apart from the tests' `agtest-*` at a glance. Deleted by the benchmark's cleanups.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Netns, requireNetnsTools } from '../../test/support/netns.js';
import type { Cleanups } from './util.js';

export async function createBenchNetns(cleanups: Cleanups): Promise<Netns> {
  requireNetnsTools();
  const ns = new Netns(`agbench-${randomBytes(4).toString('hex')}`);
  const add = spawnSync('ip', ['netns', 'add', ns.name], { encoding: 'utf8' });
  if (add.status !== 0) throw new Error(`ip netns add ${ns.name} failed: ${add.stderr.trim()}`);
  cleanups.add(() => ns.destroy());
  await ns.execOk('ip', ['link', 'set', 'lo', 'up']);
  return ns;
}
