// `ami-guard replay`: a dry run like fail2ban-regex. Reads a recorded AMI stream and shows, per address, what the
// current policy would count and whether and when it would ban, through the same frame reader, event parser,
// injection tracker, policy and store semantics as the daemon (the in-process store, on the recording's own clock).
// Touches neither Redis nor nft.
import { existsSync } from 'node:fs';
import { readRecording } from '../../ami/recording.js';
import { isRecordedReply } from '../../ami/message.js';
import { Intake, type IntakeBatch } from '../../events/intake.js';
import { Policy } from '../../policy/policy.js';
import { MemoryStore } from '../../store/memory-store.js';
import { StreamDecider } from '../../policy/same-request.js';
import { recordActivity } from '../../daemon/activity.js';
import { CliError, EXIT_USAGE, loadCliConfig, type ConfigOption } from '../context.js';
import { Table, isoTime } from '../output.js';

export interface ReplayOptions extends ConfigOption {
  json?: boolean;
}

export interface AddressReport {
  address: string;
  events: Record<string, number>;
  counted: number;
  verdict: 'banned' | 'not banned' | 'ignored';
  bannedAt: string | null;
  /** failures counted when the ban fell */
  countAtBan: number | null;
  reason: string | null;
}

export interface ReplayReport {
  file: string;
  messages: number;
  securityEvents: number;
  invalid: number;
  /** events that carried lines Asterisk did not write */
  injections: number;
  addresses: AddressReport[];
}

export async function replayFile(file: string, opts: ConfigOption): Promise<ReplayReport> {
  if (!/\.(ami|jsonl)$/.test(file)) throw new CliError(EXIT_USAGE, `${file}: expected a recorded AMI stream (.ami raw bytes or .jsonl)`);
  if (!existsSync(file)) throw new CliError(EXIT_USAGE, `${file}: no such file`);
  const cfg = loadCliConfig(opts);
  const policy = new Policy(cfg.policy);
  const decider = new StreamDecider(policy);
  let clock = 0;
  const store = new MemoryStore({ nodeId: 'replay', policy: policy.params, clock: () => clock });
  const byAddress = new Map<string, AddressReport>();
  const report: ReplayReport = { file, messages: 0, securityEvents: 0, invalid: 0, injections: 0, addresses: [] };
  const entry = (address: string): AddressReport => {
    let a = byAddress.get(address);
    if (!a) {
      a = { address, events: {}, counted: 0, verdict: 'not banned', bannedAt: null, countAtBan: null, reason: null };
      byAddress.set(address, a);
    }
    return a;
  };
  const batches: IntakeBatch[] = [];
  const intake = new Intake((b) => batches.push(b));

  const apply = async (b: IntakeBatch): Promise<void> => {
    for (const e of b.events) {
      report.securityEvents++;
      // the recording's own clock: EventTV, or the last one seen
      clock = Math.max(clock, e.eventTime ?? clock);
      const a = entry(e.address.text);
      a.events[e.kind] = (a.events[e.kind] ?? 0) + 1;
      const d = decider.decide(e);
      if (d.action === 'skip') {
        if (d.why === 'ignored' || d.why === 'unbannable') a.verdict = 'ignored';
        continue;
      }
      if (d.action === 'count') a.counted += d.weight;
      if (a.verdict === 'banned') continue;
      const activity = {
        target: e.address, failures: d.action === 'count' ? d.weight : 0, kinds: d.action === 'count' ? { [e.kind]: 1 } : {},
        account: e.accountId, challenges: d.action === 'challenge' ? 1 : 0, successes: d.action === 'success' ? 1 : 0,
        trust: d.action === 'success' && d.trust, first: clock, last: clock,
      };
      const [v] = await recordActivity(store, [activity], clock);
      if (v?.type === 'banned') {
        a.verdict = 'banned';
        a.bannedAt = isoTime(v.ban.bannedAt);
        a.countAtBan = v.ban.count;
        a.reason = v.ban.reason;
      }
    }
    for (const inj of b.injections) {
      report.injections++;
      if (!inj.source) continue;
      const a = entry(inj.source.text);
      if (policy.refusal(inj.source)) {
        a.verdict = 'ignored';
      } else if (a.verdict !== 'banned') {
        a.verdict = 'banned';
        a.bannedAt = isoTime(clock);
        a.reason = 'injection';
      }
    }
  };

  try {
    await readRecording(
      file,
      (f) => {
        if (!f.banner) report.messages++;
        // a recording holds the recorder's own action replies: Asterisk's text, closing any open injection
        if (isRecordedReply(f)) intake.boundary();
        else intake.frame(f, clock);
        intake.flush();
      },
      async () => {
        for (const b of batches.splice(0)) await apply(b);
      },
      () => intake.reset(),
    );
    intake.reset(); // the end of the recording closes whatever injection is open
    for (const b of batches.splice(0)) await apply(b);
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(EXIT_USAGE, `${file}: ${(err as Error).message}`);
  } finally {
    await store.close();
  }
  report.invalid = Object.values(intake.counters.invalid).reduce((x, y) => x + y, 0);
  report.addresses = [...byAddress.values()].sort((x, y) => x.address.localeCompare(y.address));
  return report;
}

export async function replay(args: string[], opts: ReplayOptions): Promise<number> {
  const report = await replayFile(args[0]!, opts);
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return 0;
  }
  process.stdout.write(`${report.file}: ${report.messages} messages, ${report.securityEvents} security events, ${report.invalid} invalid, ${report.injections} injections\n\n`);
  const table = new Table([
    { title: 'ADDRESS', width: 24 },
    { title: 'EVENTS', width: 7 },
    { title: 'COUNTED', width: 8 },
    { title: 'VERDICT', width: 0 },
  ]);
  table.header();
  for (const a of report.addresses) {
    const total = Object.values(a.events).reduce((x, y) => x + y, 0);
    const verdict = a.verdict === 'banned'
      ? `banned at ${a.bannedAt!.slice(11, 23)}${a.countAtBan !== null ? ` after ${a.countAtBan} failures` : ''} (${a.reason})`
      : a.verdict;
    table.row([a.address, String(total), String(a.counted), verdict]);
  }
  const kinds = new Set(report.addresses.flatMap((a) => Object.keys(a.events)));
  process.stdout.write(`\nkinds seen: ${[...kinds].sort().join(', ') || 'none'}\n`);
  process.stdout.write(`${report.addresses.filter((a) => a.verdict === 'banned').length} of ${report.addresses.length} addresses would be banned\n`);
  return 0;
}
