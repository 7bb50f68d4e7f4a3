import { pino, type Logger, type LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

// Belt and braces: no code path should hand a secret to the logger, but if a config object ever slips into a log
// call these paths are censored rather than printed.
const REDACT = [
  'secret', '*.secret', 'ami.secret', 'password', '*.password', 'redis.password',
  'url', // full URLs may carry credentials; log redactUrl(url) under another name instead
  'config.ami.secret', 'config.redis.url', 'config.redis.password',
];

export function createLogger(level: LevelWithSilent = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { name: 'ami-guard' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? stdoutDestination(),
  );
}

/** A terminal gets readable lines; anything else (journald, docker logs, a pipe, the tests) one JSON object per line. */
function stdoutDestination(): NodeJS.WritableStream {
  if (!process.stdout.isTTY) return process.stdout;
  // sync: the CLI ends with process.exit(), which would cut an asynchronous writer short
  return pretty({ colorize: true, sync: true, translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l', ignore: 'pid,hostname,name' });
}

/** `redis://user:pass@host:6379/0` → `redis://user:***@host:6379/0`; anything unparsable is hidden whole. */
export function redactUrl(url: string): string {
  if (!url) return url;
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '[unparsable url]';
  }
}
