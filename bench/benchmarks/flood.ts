// `npm run bench -- flood --ami=HOST:PORT [--ami-user=U --ami-secret=S] [--netns=NS] [--seconds=N] [--load=CMD]`
//
// The live check of issue 12 against a real AMI endpoint (e.g. shared/lab's Asterisk under scenarios/flood.sh): the
// real daemon (with its own redis-server), and beside it an independent counter of the security events the endpoint
// sends (bench/lib/ami-count.ts, no code shared with src/). The daemon's policy never bans, so every event of the
// flood is counted and none is cut short by a ban, the stand-in for a flood from many sources. With --netns both run
// inside that namespace (the lab's AMI listens on 127.0.0.1 in agl-pbx). --load runs a command (no shell; split on
// spaces) and waits for it; otherwise the bench observes for --seconds. Reported: both counts, AMI disconnects, events
// shed, the daemon's CPU per event and its memory. Not part of `npm run bench` unless named, and not of `npm test`.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, freePort } from '../lib/daemon.js';
import { cpuTimes, memory } from '../lib/proc.js';
import { measured, type BenchContext, type BenchResult, type Benchmark } from '../lib/types.js';
import { fmtInt, round, sleep } from '../lib/util.js';

const COUNTER = new URL('../lib/ami-count.js', import.meta.url).pathname;
/** the daemon is done when the endpoint has been quiet this long */
const QUIET_MS = 3_000;

function inNetns(netns: string | undefined, file: string, args: readonly string[]): [string, string[]] {
  return netns ? ['ip', ['netns', 'exec', netns, file, ...args]] : [file, [...args]];
}

function child(netns: string | undefined, file: string, args: readonly string[], ctx: BenchContext): ChildProcess {
  const [f, a] = inNetns(netns, file, args);
  const c = spawn(f, a, { stdio: ['ignore', 'pipe', 'pipe'] });
  ctx.cleanups.add(async () => {
    if (c.exitCode === null) c.kill('SIGKILL');
  });
  return c;
}

/** Reads /metrics of a daemon listening on 127.0.0.1:port inside `netns` (a fetch run there). */
async function scrape(netns: string | undefined, port: number): Promise<string> {
  const script = `fetch('http://127.0.0.1:${port}/metrics').then(r=>r.text()).then(t=>process.stdout.write(t),()=>process.exit(1))`;
  const [f, a] = inNetns(netns, process.execPath, ['-e', script]);
  return new Promise((resolve, reject) => {
    const c = spawn(f, a, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`scraping /metrics failed (${String(code)})`))));
  });
}

function sum(metrics: string, name: string): number {
  let total = 0;
  for (const line of metrics.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return total;
}

export const flood: Benchmark = {
  name: 'flood',
  title: "live flood: the daemon's count against an independent count of a real AMI endpoint's events",
  timeoutMs: 900_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    const o = ctx.opts;
    if (!o.ami) throw new Error('flood needs --ami=HOST:PORT (and usually --netns=NS, --ami-user, --ami-secret, --load=CMD)');
    const [host, portText] = o.ami.split(':');
    const amiPort = Number(portText);
    const netns = o.netns || undefined;
    const user = o.amiUser ?? 'amiguard';
    const secret = o.amiSecret ?? 'amiguard-secret';

    const redisPort = await freePort();
    const redis = child(
      netns,
      'redis-server',
      ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      ctx,
    );
    await sleep(300);
    if (redis.exitCode !== null) throw new Error('redis-server did not start (is it installed?)');

    const httpPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'agbench-flood-'));
    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        ami: { host, port: amiPort, username: user, secret },
        redis: { url: `redis://127.0.0.1:${redisPort}/0`, keyPrefix: 'flood:' },
        node: { id: 'bench-flood' },
        // never bans: every event of the flood is counted, none is skipped as already banned
        policy: {
          maxretry: 1_000_000_000,
          scanner: { maxretry: 1_000_000_000 },
          trust: { maxretry: 1_000_000_000 },
          offender: { maxretry: 1_000_000_000 },
        },
        nft: { table: 'ami_guard_flood' },
        http: { port: httpPort },
        // its own, never the host's /run/ami-guard or /var/lib/ami-guard (the daemon is killed at the end)
        control: { socket: join(dir, 'control.sock') },
        store: { stateDir: join(dir, 'state') },
        log: { level: 'warn' },
      }),
    );
    const daemon = child(netns, process.execPath, [CLI, 'run', '--config', config], ctx);
    let daemonOut = '';
    daemon.stdout!.setEncoding('utf8').on('data', (d: string) => (daemonOut = (daemonOut + d).slice(-20_000)));
    daemon.stderr!.setEncoding('utf8').on('data', (d: string) => (daemonOut = (daemonOut + d).slice(-20_000)));
    const counter = child(netns, process.execPath, [COUNTER, host!, String(amiPort), user, secret], ctx);
    let counted = '';
    counter.stdout!.setEncoding('utf8').on('data', (d: string) => (counted += d));
    await sleep(2_000);
    if (daemon.exitCode !== null) throw new Error(`the daemon exited: ${daemonOut}`);
    // `ip netns exec` execs the command in place: the child's pid is the daemon's
    const daemonPid = daemon.pid!;

    const cpu0 = cpuTimes(daemonPid);
    const before = await scrape(netns, httpPort);
    counter.kill('SIGUSR1'); // both counts start here, after both logins
    let peakRss = 0;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, memory(daemonPid)?.rss ?? 0);
    }, 250);
    ctx.cleanups.add(async () => clearInterval(sampler));
    if (o.load) {
      const [cmd, ...args] = o.load.split(' ').filter(Boolean);
      ctx.log(`load: ${o.load}`);
      const load = spawn(cmd!, args, { stdio: 'inherit' });
      await new Promise<void>((resolve) => load.on('close', () => resolve()));
    } else {
      ctx.log(`observing for ${o.seconds} s: start the flood now`);
      await sleep(o.seconds * 1000);
    }
    // settle: the endpoint quiet, the daemon caught up
    let last = -1;
    for (;;) {
      await sleep(QUIET_MS);
      const n = sum(await scrape(netns, httpPort), 'ami_guard_security_events_total');
      if (n === last) break;
      last = n;
    }
    clearInterval(sampler);
    const after = await scrape(netns, httpPort);
    const cpu1 = cpuTimes(daemonPid);
    counter.kill('SIGTERM');
    await new Promise<void>((resolve) => counter.on('close', () => resolve()));
    const independent = JSON.parse(counted.trim().split('\n').at(-1) ?? '{}') as {
      events?: number;
      disconnects?: number;
      firstAt?: number;
      lastAt?: number;
    };

    const events = sum(after, 'ami_guard_security_events_total') - sum(before, 'ami_guard_security_events_total');
    const reconnects = sum(after, 'ami_guard_ami_reconnects_total');
    const shed = sum(after, 'ami_guard_events_shed_total');
    const injections = sum(after, 'ami_guard_ami_injections_total');
    const cpuMs = cpu0 && cpu1 ? cpu1.self - cpu0.self : NaN;
    const theirs = independent.events ?? 0;
    const spanS = independent.firstAt && independent.lastAt ? (independent.lastAt - independent.firstAt) / 1000 : 0;
    const data = {
      events,
      independent: theirs,
      reconnects,
      shed,
      injections,
      cpuMs,
      peakRssBytes: peakRss,
      spanSeconds: spanS,
      ratePerSecond: spanS > 0 ? theirs / spanS : 0,
    };
    return {
      data,
      rows: [
        measured('live: security events, daemon / independent count', `${fmtInt(events)} / ${fmtInt(theirs)}`, {
          goal: 'equal',
          met: events === theirs,
          note: spanS > 0 ? `${fmtInt(theirs / spanS)} events/s over ${round(spanS, 1)} s` : undefined,
        }),
        measured('live: AMI disconnects during the flood', String(reconnects), { goal: '0', met: reconnects === 0 }),
        measured('live: events shed', fmtInt(shed), { goal: '0', met: shed === 0 }),
        measured('live: daemon CPU per event', events > 0 ? `${round((cpuMs * 1000) / events, 1)} µs` : 'n/a'),
        measured('live: daemon peak RSS', `${round(peakRss / 1e6, 1)} MB`),
      ],
    };
  },
};
