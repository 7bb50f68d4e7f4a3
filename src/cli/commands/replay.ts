// `ami-guard replay`: a dry run like fail2ban-regex. Reads a recorded AMI stream (`.ami`, `.jsonl`, as `ami-guard
// record` writes them) or Asterisk's own security log (security.log, messages.log, rotated and gzipped ones too, or
// `-` for stdin) and shows, per address, what the current policy would count and whether and when it would ban;
// `--verbose` shows each event and the decision taken on it. Both kinds of input go through the daemon's parsers
// (the frame reader and event parser, or the security-log reader, each with its injection rules) into the same
// decisions (cli/dry-run.ts). Touches neither Redis nor nft.
import { createReadStream, existsSync } from 'node:fs';
import { Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { readRecording } from '../../ami/recording.js';
import { isRecordedReply } from '../../ami/message.js';
import { Intake, type IntakeBatch } from '../../events/intake.js';
import { SecurityLogIntake } from '../../events/log-intake.js';
import { formatDuration } from '../../config/duration.js';
import { DryRun, type AddressReport, type Decision } from '../dry-run.js';
import { CliError, EXIT_USAGE, loadCliConfig, type ConfigOption } from '../context.js';
import { Table, jsonText, print, printable } from '../output.js';

export type { AddressReport } from '../dry-run.js';

export interface ReplayOptions extends ConfigOption {
  json?: boolean;
  verbose?: boolean;
}

export interface ReplayReport {
  file: string;
  /** `ami` (.ami, .jsonl) or `security-log` */
  source: 'ami' | 'security-log';
  /** AMI messages, or log lines */
  messages: number;
  securityEvents: number;
  invalid: number;
  /** events that carried lines or fields Asterisk did not write */
  injections: number;
  addresses: AddressReport[];
}

export async function replayFile(file: string, opts: ConfigOption, show?: (d: Decision) => void | Promise<void>): Promise<ReplayReport> {
  const ami = /\.(ami|jsonl)$/.test(file);
  if (file !== '-' && !existsSync(file)) throw new CliError(EXIT_USAGE, `${file}: no such file`);
  const cfg = loadCliConfig(opts);
  const run = new DryRun(cfg, show);
  const report: ReplayReport = {
    file,
    source: ami ? 'ami' : 'security-log',
    messages: 0,
    securityEvents: 0,
    invalid: 0,
    injections: 0,
    addresses: [],
  };
  try {
    if (ami) {
      const r = await replayRecording(file, run);
      report.messages = r.messages;
      report.invalid = r.invalid;
    } else {
      const r = await replayLog(file, run);
      report.messages = r.lines;
      report.invalid = r.invalid;
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(EXIT_USAGE, `${file}: ${(err as Error).message}`);
  } finally {
    await run.close();
  }
  report.securityEvents = run.securityEvents;
  report.injections = run.injections;
  report.addresses = run.addresses();
  return report;
}

/** An AMI recording through the frame reader and the event parser, as the daemon reads its socket. */
async function replayRecording(file: string, run: DryRun): Promise<{ messages: number; invalid: number }> {
  const batches: IntakeBatch[] = [];
  const intake = new Intake((b) => batches.push(b));
  let messages = 0;
  await readRecording(
    file,
    (f) => {
      if (!f.banner) messages++;
      // a recording holds the recorder's own action replies: Asterisk's text, closing any open injection
      if (isRecordedReply(f)) intake.boundary();
      else intake.frame(f, run.now);
      intake.flush();
    },
    async () => {
      for (const b of batches.splice(0)) await run.apply(b);
    },
    () => intake.reset(),
  );
  intake.reset(); // the end of the recording closes whatever injection is open
  for (const b of batches.splice(0)) await run.apply(b);
  return { messages, invalid: Object.values(intake.counters.invalid).reduce((x, y) => x + y, 0) };
}

/** A security log (plain or gzipped; `-` is stdin) through the security-log reader. */
async function replayLog(file: string, run: DryRun): Promise<{ lines: number; invalid: number }> {
  const batches: IntakeBatch[] = [];
  const intake = new SecurityLogIntake((b) => batches.push(b));
  const input: Readable = file === '-' ? process.stdin : createReadStream(file);
  let first = true;
  try {
    for await (const bytes of logBytes(input)) {
      if (first) {
        first = false;
        if (!looksLikeLog(bytes)) {
          throw new CliError(
            EXIT_USAGE,
            `${file}: not an Asterisk log (its lines start with "[date] LEVEL[thread]"), nor a recording (.ami, .jsonl)`,
          );
        }
      }
      intake.push(bytes);
      for (const b of batches.splice(0)) await run.apply(b);
    }
    intake.end();
    for (const b of batches.splice(0)) await run.apply(b);
  } finally {
    if (input !== process.stdin) input.destroy();
  }
  return { lines: intake.counters.lines, invalid: Object.values(intake.counters.invalid).reduce((x, y) => x + y, 0) };
}

/** The input's bytes; a gzipped one (logrotate's `compress`) is read through gunzip, as its first bytes tell. */
async function* logBytes(input: Readable): AsyncGenerator<Buffer> {
  const it = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head = await it.next();
  if (head.done) return;
  async function* all(): AsyncGenerator<Buffer> {
    yield head.value;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  }
  if (head.value[0] !== 0x1f || head.value[1] !== 0x8b) {
    yield* all();
    return;
  }
  const gunzip = createGunzip();
  pipeline(Readable.from(all()), gunzip, () => undefined);
  yield* gunzip as AsyncIterable<Buffer>;
}

function looksLikeLog(head: Buffer): boolean {
  const text = head.toString('latin1', 0, Math.min(head.length, 512)).replace(/^\uFEFF?[\r\n]*/, '');
  return text === '' || /^\[[^\]\r\n]{1,64}\] /.test(text);
}

export async function replay(args: string[], opts: ReplayOptions): Promise<number> {
  const jsonLines = opts.json && opts.verbose;
  // each line waits for stdout to take it: a long log piped into a pager holds the reading, not the memory
  const show = opts.verbose ? (d: Decision) => print(jsonLines ? `${jsonText(d)}\n` : `${decisionLine(d)}\n`) : undefined;
  const report = await replayFile(args[0]!, opts, show);
  if (jsonLines) {
    process.stdout.write(`${jsonText({ type: 'report', ...report })}\n`);
    return 0;
  }
  if (opts.json) {
    process.stdout.write(`${jsonText(report)}\n`);
    return 0;
  }
  if (opts.verbose) process.stdout.write('\n');
  const unit = report.source === 'ami' ? 'messages' : 'lines';
  process.stdout.write(
    `${printable(report.file)}: ${report.messages} ${unit}, ${report.securityEvents} security events, ${report.invalid} invalid, ${report.injections} injections\n\n`,
  );
  const table = new Table([
    { title: 'ADDRESS', width: 24 },
    { title: 'EVENTS', width: 7 },
    { title: 'COUNTED', width: 8 },
    { title: 'VERDICT', width: 0 },
  ]);
  table.header();
  for (const a of report.addresses) {
    const total = Object.values(a.events).reduce((x, y) => x + y, 0);
    const verdict =
      a.verdict === 'banned'
        ? `banned${a.bannedAs ? ` as ${a.bannedAs}` : ''} at ${a.bannedAt!.slice(11, 23)}${a.countAtBan !== null ? ` after ${a.countAtBan} ${a.reason === 'subnet' ? 'bans' : 'failures'}` : ''} (${a.reason})`
        : a.verdict === 'not banned' && a.countedAs
          ? `not banned (counted as ${a.countedAs})`
          : a.verdict;
    table.row([a.address, String(total), String(a.counted), verdict]);
  }
  const kinds = new Set(report.addresses.flatMap((a) => Object.keys(a.events)));
  process.stdout.write(`\nkinds seen: ${[...kinds].sort().join(', ') || 'none'}\n`);
  process.stdout.write(
    `${report.addresses.filter((a) => a.verdict === 'banned').length} of ${report.addresses.length} addresses would be banned\n`,
  );
  return 0;
}

/** One decision as a line: time, kind, address, account (quoted, escaped), what was decided and why. */
export function decisionLine(d: Decision): string {
  const kind = (d.kind || 'fragment').padEnd(23);
  const address = (d.address ?? '?').padEnd(15);
  return `${d.time}  ${kind}  ${address}  ${jsonText(d.account)}  ${verdictText(d)}`;
}

function verdictText(d: Decision): string {
  const until = d.until ? ` until ${d.until}` : '';
  if (d.type === 'injection') {
    const what = `injection (${d.sign})`;
    if (d.decision === 'banned') return `${what}: BANNED for ${formatDuration(d.bantime!)}${until}`;
    if (d.decision === 'skipped') return `${what}: not banned, ${d.why}${until}`;
    return `${what}: its source cannot be told, nothing banned`;
  }
  const as = d.target ? ` as ${d.target}` : '';
  switch (d.decision) {
    case 'counted':
      return `counted ${d.count}/${d.threshold}${as}${d.weight ? ` (weight ${d.weight})` : ''}${d.why ? ` (${d.why})` : ''}`;
    case 'challenge':
      return `challenge ${d.count}/${d.threshold} unanswered${as}`;
    case 'login':
      return d.trusted ? 'login, trusted' : 'login';
    case 'skipped':
      return `skipped: ${d.why}${until}`;
    case 'banned': {
      const why =
        d.reason === 'scanner'
          ? `${d.count} unanswered challenges (scanner)`
          : d.reason === 'recidive'
            ? `${d.count} failures (recidive)`
            : `${d.count} failures`;
      // the prefix, or the address alone when its network holds a trusted one
      const what = d.banned ? ` ${d.banned} (its network holds a trusted address)` : as ? ` ${d.target}` : '';
      const subnet = d.subnet ? `; subnet ${d.subnet} banned after ${d.members?.length ?? 0} bans (${(d.members ?? []).join(', ')})` : '';
      return `BANNED${what} for ${formatDuration(d.bantime!)}: ${why}${until}${subnet}`;
    }
  }
}
