// `ami-guard record FILE`: captures the live AMI stream for a later `replay`, logged in with the daemon's configuration
// and its own AMI client (reconnects included: each connection's greeting starts a new one in the file). Writes what
// the client reads, message by message as its frame reader delimits them: `.jsonl` ({t_ms, conn, raw}, the fixtures'
// format) or `.ami` (the bytes). What we send, the Login with its secret above all, is never read back, so never
// written. Stops on Ctrl-C (SIGINT), SIGTERM or --duration, logging off first.
import { createWriteStream, type WriteStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { AmiClient } from '../../ami/client.js';
import { recordOf, recordingKind } from '../../ami/recording.js';
import { Intake } from '../../events/intake.js';
import { parseDuration, formatDuration } from '../../config/duration.js';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, loadCliConfig, type ConfigOption } from '../context.js';
import { printable } from '../output.js';

export interface RecordOptions extends ConfigOption {
  duration?: string;
}

/** how long the first login may take before `record` gives up (later losses are ridden out, as the daemon does) */
const FIRST_LOGIN_DEADLINE_MS = 10_000;
/** what may wait for the disk: past it the recording stops rather than grow without bound */
const MAX_BACKLOG_BYTES = 64 * 1024 * 1024;

export async function record(args: string[], opts: RecordOptions): Promise<number> {
  const file = args[0]!;
  let kind: 'jsonl' | 'ami';
  try {
    kind = recordingKind(file);
  } catch {
    throw new CliError(EXIT_USAGE, `${file}: name the recording .jsonl (one {t_ms, conn, raw} per message) or .ami (the raw bytes)`);
  }
  const durationMs = opts.duration === undefined ? null : parseDuration(opts.duration);
  if (durationMs === 0 || (opts.duration !== undefined && durationMs === null)) {
    throw new CliError(EXIT_USAGE, `invalid --duration ${JSON.stringify(opts.duration)} (e.g. 90s, 10m, 1h)`);
  }
  const cfg = loadCliConfig(opts);
  const out = await openNew(file);
  // the client's own log lines are for a daemon's log; here they only tell why a connection failed
  let lastError: string | null = null;
  const logger = pino(
    { level: 'warn' },
    new Writable({
      write(line: Buffer, _encoding, done) {
        try {
          const error = (JSON.parse(line.toString('utf8')) as { error?: unknown }).error;
          if (typeof error === 'string') lastError = error;
        } catch {
          // not ours to judge
        }
        done();
      },
    }),
  );

  const started = performance.now();
  const tally = { messages: 0, connections: 0, events: 0, injections: 0 };
  const intake = new Intake((b) => {
    tally.events += b.events.length;
    tally.injections += b.injections.length;
  });
  /** false once stopping: the reply to our Logoff is not part of what was recorded */
  let recording = true;
  let failure: string | null = null;
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const fail = (message: string): void => {
    failure ??= message;
    stop();
  };

  const client = new AmiClient({
    host: cfg.ami.host,
    port: cfg.ami.port,
    username: cfg.ami.username,
    secret: cfg.ami.secret,
    // the intake does what it does for the daemon: its open injections make the client close them with a Ping,
    // whose reply is recorded, so a replay sees the stream the daemon would have seen
    sink: intake,
    pingIntervalMs: cfg.ami.pingInterval,
    pingTimeoutMs: cfg.ami.pingTimeout,
    backoff: { maxMs: cfg.ami.reconnectMax },
    logger,
    tap: (f) => {
      if (!recording) return;
      if (f.banner) tally.connections++;
      tally.messages++;
      out.write(recordOf(kind, f, performance.now() - started, tally.connections));
      if (out.writableLength > MAX_BACKLOG_BYTES)
        fail(`${file}: the disk fell ${MAX_BACKLOG_BYTES >> 20} MiB behind the AMI stream; stopped`);
    },
  });
  const where = `${cfg.ami.host}:${cfg.ami.port}`;
  client.once('connected', () => {
    process.stderr.write(
      `recording AMI at ${where} (user ${printable(cfg.ami.username)}) to ${printable(file)}` +
        `${durationMs ? ` for ${formatDuration(durationMs)}` : ''}; Ctrl-C stops\n`,
    );
  });
  client.on('disconnected', (info) => {
    if (info.reason !== 'stopped') process.stderr.write(`ami-guard: AMI connection lost (${info.reason}); reconnecting\n`);
  });
  client.on('reconnected', (gapMs) => {
    process.stderr.write(
      `ami-guard: AMI reconnected after ${formatDuration(gapMs)}; the recording goes on with connection ${tally.connections}\n`,
    );
  });
  client.on('auth-failed', (info) => {
    fail(
      `AMI login rejected for user ${printable(info.username)} at ${where}: ${printable(info.message)} (check ami.username and ami.secret against manager.conf)`,
    );
  });
  out.on('error', (err) => fail(`${file}: ${err.message}`));

  const onSignal = (): void => stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const timers: NodeJS.Timeout[] = [];
  if (durationMs) timers.push(setTimeout(stop, durationMs));
  timers.push(
    setTimeout(() => {
      if (client.stats.connects === 0)
        fail(`no AMI session with ${where} within ${FIRST_LOGIN_DEADLINE_MS / 1000} s${lastError ? `: ${printable(lastError)}` : ''}`);
    }, FIRST_LOGIN_DEADLINE_MS),
  );

  client.start();
  try {
    await stopped;
  } finally {
    for (const t of timers) clearTimeout(t);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    recording = false;
    await client.stop();
    await close(out);
  }
  const took = formatDuration(performance.now() - started);
  process.stderr.write(
    `${printable(file)}: ${tally.messages} messages (${tally.events} security events, ${tally.injections} injections)` +
      ` from ${tally.connections} connection${tally.connections === 1 ? '' : 's'} in ${took}\n`,
  );
  if (failure) {
    process.stderr.write(`ami-guard: ${failure}\n`);
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}

/** A new file, readable by its owner only (it holds what attackers sent, and the PBX's accounts); never overwrites. */
function openNew(file: string): Promise<WriteStream> {
  return new Promise((resolve, reject) => {
    const out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
    out.once('open', () => {
      out.off('error', failed);
      resolve(out);
    });
    const failed = (err: NodeJS.ErrnoException): void => {
      reject(
        new CliError(
          err.code === 'EEXIST' ? EXIT_USAGE : EXIT_FAILURE,
          err.code === 'EEXIST' ? `${file} exists; record writes a new file (remove it or choose another name)` : `${file}: ${err.message}`,
        ),
      );
    };
    out.once('error', failed);
  });
}

function close(out: WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (out.destroyed) return resolve();
    out.end(() => resolve());
    out.once('error', () => resolve());
  });
}
