// Child process for the latency benchmark's floors: runs `nsenter --net=… nft …` the way the daemon's runner does,
// from a process as small as a freshly started daemon. (Spawning from the bench process itself would time the bench:
// fork() from a process holding hundreds of MB of stream buffers costs 30-50 ms, against ~6 ms from a small one.)
// Usage: node spawn-floor.js <netns> add <table> <set> <element>... | list <table> <set> <count>
// Prints one JSON line per run: {"el": …, "start": <ms since epoch, µs precision>, "exit": …}.
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';

const [netns, mode, table, set, ...rest] = process.argv.slice(2);
const epoch = (): number => performance.timeOrigin + performance.now();

function nft(args: string[], stdin: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn('nsenter', [`--net=/run/netns/${netns!}`, '--', 'nft', ...args], { stdio: ['pipe', 'ignore', 'ignore'] });
    c.on('error', reject);
    c.on('close', () => resolve());
    c.stdin.on('error', () => undefined);
    c.stdin.end(stdin);
  });
}

if (mode === 'add') {
  for (const el of rest) {
    const start = epoch();
    await nft(['-f', '-'], `add element inet ${table!} ${set!} { ${el} timeout 60s }\n`);
    process.stdout.write(`${JSON.stringify({ el, start, exit: epoch() })}\n`);
    await new Promise((r) => setTimeout(r, 5));
  }
} else if (mode === 'list') {
  for (let i = 0; i < Number(rest[0] ?? 20); i++) {
    const start = epoch();
    await nft(['-j', 'list', 'set', 'inet', table!, set!], '');
    process.stdout.write(`${JSON.stringify({ el: null, start, exit: epoch() })}\n`);
  }
}
