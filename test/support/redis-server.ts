// Starts a throwaway redis-server for a test: loopback only, no persistence, its own temp dir, a free port.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { freePort } from './ports.js';
import { join } from 'node:path';

export interface RedisServer {
  /** `redis://127.0.0.1:<port>`, with the password when one was set */
  readonly url: string;
  readonly port: number;
  /** of the redis-server process now (a restart changes it): the benchmarks read its CPU time */
  readonly pid: number;
  /** kills the server the hard way (SIGKILL, like a crash or an OOM kill); its port and data directory stay */
  crash(): Promise<void>;
  /** starts it again on the same port and directory (with `persist`, it reloads what it had) */
  restart(): Promise<void>;
  /** SIGSTOP: a hung server, its connections open and silent */
  pause(): void;
  /** SIGCONT; stop() resumes a paused server first */
  resume(): void;
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  /** sets `--requirepass` and puts the password into `url` */
  readonly password?: string;
  /** more `redis-server` arguments, e.g. `['--maxmemory', '64mb']` */
  readonly args?: readonly string[];
  /** AOF on with fsync always, so a crash and restart keeps every write (as the docker-compose Redis does) */
  readonly persist?: boolean;
}

const START_TIMEOUT_MS = 10_000;

export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RedisServer> {
  if (spawnSync('redis-server', ['--version']).error) {
    throw new Error('redis-server not found: apt-get install -y redis-server');
  }
  // the port can be taken between probing and binding; a fresh port usually fixes that
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(await freePort(), opts);
    } catch (err) {
      if (attempt === 3) throw err;
    }
  }
}

async function startOnce(port: number, opts: RedisServerOptions): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'ami-guard-redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--dir',
    dir,
    '--daemonize',
    'no',
    '--logfile',
    '',
    ...(opts.persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
    ...(opts.password === undefined ? [] : ['--requirepass', opts.password]),
    ...(opts.args ?? []),
  ];
  let output = '';
  let child: ChildProcess;
  // a test that crashes before its after hook must not leave a server behind
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const launch = async (): Promise<void> => {
    child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => {
      output = (output + d.toString()).slice(-4_000);
    });
    child.stderr!.on('data', (d: Buffer) => {
      output = (output + d.toString()).slice(-4_000);
    });
    try {
      await waitForPing(port, child);
    } catch (err) {
      throw new Error(`redis-server did not start on port ${port}: ${(err as Error).message}\n${output}`);
    }
  };

  let paused = false;
  const resume = (): void => {
    if (paused && child.exitCode === null && child.signalCode === null) child.kill('SIGCONT');
    paused = false;
  };
  const stop = async (): Promise<void> => {
    process.removeListener('exit', killOnExit);
    resume();
    await kill(child);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await launch();
  } catch (err) {
    await stop();
    throw err;
  }
  const auth = opts.password === undefined ? '' : `:${encodeURIComponent(opts.password)}@`;
  return {
    url: `redis://${auth}127.0.0.1:${port}`,
    port,
    get pid() {
      return child.pid!;
    },
    async crash() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
    },
    restart: launch,
    pause() {
      paused = true;
      child.kill('SIGSTOP');
    },
    resume,
    stop,
  };
}

/** Resolves once the server answers PING (+PONG, or -NOAUTH when it wants a password: it is up either way). */
async function waitForPing(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`exited (${child.exitCode ?? child.signalCode})`);
    }
    if (await pingOnce(port)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no answer to PING within ${START_TIMEOUT_MS} ms`);
}

function pingOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ port, host: '127.0.0.1' });
    let reply = '';
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1_000, () => done(false));
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d: Buffer) => {
      reply += d.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
    });
  });
}

function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
