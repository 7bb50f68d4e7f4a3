// Reads CPU time and memory of processes from /proc, and the machine's description.
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { cpus, totalmem, release } from 'node:os';

/** USER_HZ: /proc/<pid>/stat counts CPU time in these ticks (100 on every Linux this runs on). */
export const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

export interface CpuTimes {
  /** own user + system time, ms */
  readonly self: number;
  /** user + system time of waited-for children (e.g. the nft processes the daemon spawns), ms */
  readonly children: number;
}

/** CPU times of a process, or null when it is gone. */
export function cpuTimes(pid: number): CpuTimes | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // the command name may hold spaces and parentheses: fields start after the last ')'
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17
  const f = (n: number): number => Number(fields[n - 3]);
  const tick = 1000 / CLK_TCK;
  return { self: (f(14) + f(15)) * tick, children: (f(16) + f(17)) * tick };
}

/** Sums busy and total jiffies over all CPUs from /proc/stat, in ms. */
export function systemCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
  const busy = user + nice + system + irq + softirq + steal;
  const tick = 1000 / CLK_TCK;
  return { busy: busy * tick, total: (busy + idle + iowait) * tick };
}

/** VmRSS and VmHWM (peak) of a process, in bytes; null when it is gone. */
export function memory(pid: number): { rss: number; hwm: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

export function loadavg(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').trim().split(' ').slice(0, 3).join(' ');
  } catch {
    return '?';
  }
}

function version(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) return 'not installed';
  return (r.stdout || r.stderr).trim().split('\n')[0] ?? '';
}

export interface Machine {
  readonly nproc: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly redis: string;
  readonly nft: string;
  readonly fail2ban: string;
  readonly loadavgAtStart: string;
  /** what was measured: the commit, and whether src/ or test/ had uncommitted changes */
  readonly commit: string;
  readonly srcDirty: boolean | null;
}

export function machine(): Machine {
  let model = cpus()[0]?.model ?? '?';
  try {
    model = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? model;
  } catch {
    // keep os.cpus()
  }
  return {
    nproc: cpus().length,
    cpuModel: model,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    redis: version('redis-server', ['--version']).replace(/^Redis server v=(\S+).*$/, '$1'),
    nft: version('nft', ['--version']),
    fail2ban: version('fail2ban-regex', ['--version']),
    loadavgAtStart: loadavg(),
    ...revision(),
  };
}

function revision(): { commit: string; srcDirty: boolean | null } {
  const fromEnv = process.env['AGBENCH_COMMIT'];
  if (fromEnv) return { commit: fromEnv, srcDirty: false };
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  if (head.status !== 0) return { commit: 'unknown', srcDirty: null };
  const st = spawnSync('git', ['status', '--porcelain', '--', 'src', 'test', 'package.json'], { encoding: 'utf8' });
  return { commit: head.stdout.trim(), srcDirty: st.status === 0 ? st.stdout.trim() !== '' : null };
}
