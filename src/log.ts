import { pino, type Logger, type LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

// Belt and braces: no code path should hand a secret to the logger, but if a config object ever slips into a log
// call these paths are censored rather than printed.
const REDACT = [
  'secret',
  '*.secret',
  'ami.secret',
  'password',
  '*.password',
  'redis.password',
  'url', // full URLs may carry credentials; log redactUrl(url) under another name instead
  'config.ami.secret',
  'config.redis.url',
  'config.redis.password',
];

export interface LoggerOptions {
  /**
   * Write asynchronously (the daemon): a ban line costs the hot path a buffer append, not a write() to a pipe that
   * journald or docker may be slow to drain. Lines are flushed on exit; past `MAX_BUFFERED` a burst drops lines rather
   * than memory (counted by droppedLines()).
   */
  readonly async?: boolean;
}

const MAX_BUFFERED = 32 * 1024 * 1024;
let dropped = 0;

/** Log lines dropped since start because the output could not keep up (async loggers only). */
export function droppedLines(): number {
  return dropped;
}

/** the children made from each root logger: pino's children keep the level they were born with */
const families = new WeakMap<Logger, Set<WeakRef<Logger>>>();

export function createLogger(level: LevelWithSilent = 'info', destination?: NodeJS.WritableStream, options: LoggerOptions = {}): Logger {
  const children = new Set<WeakRef<Logger>>();
  const root = pino(
    {
      level,
      base: { name: 'ami-guard' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      onChild: (child) => {
        if (children.size >= 256) for (const ref of children) if (!ref.deref()) children.delete(ref);
        children.add(new WeakRef(child));
      },
    },
    destination ?? (options.async && !process.stdout.isTTY ? asyncStdout() : stdoutDestination()),
  );
  families.set(root, children);
  return root;
}

/** Sets the level of a logger made by createLogger and of every child made from it (a reload of log.level). */
export function setLogLevel(root: Logger, level: LevelWithSilent): void {
  root.level = level;
  for (const ref of families.get(root) ?? []) {
    const child = ref.deref();
    if (child) child.level = level;
  }
}

function asyncStdout(): NodeJS.WritableStream {
  // pino registers the stream to be flushed synchronously on exit
  const dest = pino.destination({ dest: 1, sync: false, minLength: 0, maxLength: MAX_BUFFERED });
  dest.on('drop', () => {
    dropped++;
  });
  return dest as unknown as NodeJS.WritableStream;
}

/** A terminal gets readable lines; anything else (journald, docker logs, a pipe, the tests) one JSON object per line. */
function stdoutDestination(): NodeJS.WritableStream {
  if (!process.stdout.isTTY) return process.stdout;
  return prettyStream(true);
}

/**
 * One event, one line: an operator watching a terminal reads a ban as `INFO: ban 198.18.0.11 {"reason":…}`, not as
 * an object spread over a dozen lines. The fields are JSON (control characters escaped); the message is escaped here,
 * since pino-pretty prints it as it is and a message may quote what an attacker or a shared Redis wrote.
 */
export function prettyStream(colorize: boolean, destination?: NodeJS.WritableStream): NodeJS.WritableStream {
  return pretty({
    colorize,
    // sync: the CLI ends with process.exit(), which would cut an asynchronous writer short
    sync: true,
    singleLine: true,
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
    ignore: 'pid,hostname,name',
    messageFormat: (log, messageKey) => escapeControl(String(log[messageKey] ?? '')),
    ...(destination ? { destination } : {}),
  });
}

// C0 controls, DEL, C1 controls (an 8-bit CSI starts escape sequences on some terminals), line and paragraph
// separators, and the bidirectional overrides that make a line read differently than it is (Trojan Source)

const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** Text from the AMI stream or from Redis, made safe for a terminal: every control character as a \uXXXX escape. */
export function escapeControl(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// ioredis reads every query parameter as a client option (`?password=…`, `?sentinelPassword=…`), so a credential can
// sit in the query as well as in the userinfo
const SECRET_PARAM = /pass|secret|token|auth|cred|key/i;

/**
 * `redis://user:pass@host:6379/0` → `redis://user:***@host:6379/0`, and `?password=pass` → `?password=***`;
 * anything unparsable is hidden whole.
 */
export function redactUrl(url: string): string {
  if (!url) return url;
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const key of [...new Set(u.searchParams.keys())]) {
      if (SECRET_PARAM.test(key)) u.searchParams.set(key, '***');
    }
    return u.toString();
  } catch {
    return '[unparsable url]';
  }
}
