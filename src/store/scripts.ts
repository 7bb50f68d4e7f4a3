// The Lua scripts in ./lua/, read once and registered with ioredis's defineCommand (EVALSHA, falling back to EVAL on
// NOSCRIPT, so a script flush or a failover to a fresh replica needs no handling here), with typed wrappers.
// Every script declares `allow-cross-slot-keys`: the batch script reaches the keys of many buckets on one Cluster
// node (the caller groups a batch by node); the others touch one bucket's slot. Redis 7.0 or later reads the flag.
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';

const LUA_DIR = new URL('./lua/', import.meta.url);
const SHEBANG = '#!lua flags=allow-cross-slot-keys';

const SCRIPTS = {
  recordActivity: { file: 'record-activity.lua', command: 'amiGuardRecordActivity', keys: 1 },
  ban: { file: 'ban.lua', command: 'amiGuardBan', keys: 2 },
  unban: { file: 'unban.lua', command: 'amiGuardUnban', keys: 2 },
  restoreBan: { file: 'restore-ban.lua', command: 'amiGuardRestoreBan', keys: 2 },
  escalate: { file: 'escalate.lua', command: 'amiGuardEscalate', keys: 1 },
  activeBans: { file: 'active-bans.lua', command: 'amiGuardActiveBans', keys: 1 },
} as const;

type ScriptName = keyof typeof SCRIPTS;
export type Arg = string | number;

/** What defineCommand adds to a client, by the command names above. */
type DefinedCommands = Record<(typeof SCRIPTS)[ScriptName]['command'], (...args: Arg[]) => Promise<unknown>>;

let sources: Record<ScriptName, string> | undefined;

/** Reads each script once, with the shared record and ban logic after the flags line. */
function loadSources(): Record<ScriptName, string> {
  if (!sources) {
    const include = readFileSync(new URL('include/record.lua', LUA_DIR), 'utf8');
    const read = (name: ScriptName): string => `${SHEBANG}\n${include}\n${readFileSync(new URL(SCRIPTS[name].file, LUA_DIR), 'utf8')}`;
    sources = {
      recordActivity: read('recordActivity'),
      ban: read('ban'),
      unban: read('unban'),
      restoreBan: read('restoreBan'),
      escalate: read('escalate'),
      activeBans: read('activeBans'),
    };
  }
  return sources;
}

/** How long a ban lasts and when it becomes recidive: the ARGV block of include/record.lua (banParams). */
export interface BanRule {
  readonly bantimeMs: number;
  readonly factor: number;
  readonly maxtimeMs: number;
  readonly rndtimeMs: number;
  readonly recidiveMaxretry: number;
  readonly recidiveFindtimeMs: number;
  readonly recidiveBantimeMs: number;
  readonly historyTtlMs: number;
  readonly historyCap: number;
  readonly node: string;
}

/** The fixed ARGV of record-activity.lua (ARGV[3..21] but the jitter seed, ARGV[15]), built once per store. */
export interface ActivityRule {
  readonly windowEpochMs: number;
  readonly maxretry: number;
  readonly findtimeMs: number;
  readonly trustMaxretry: number;
  readonly offenderMaxretry: number;
  readonly scannerMaxretry: number;
  readonly scannerFindtimeMs: number;
  readonly trustTtlMs: number;
  readonly ban: BanRule;
  /** subnet escalation (escalate.lua): maxbans 0 is off */
  readonly subnetMaxbans: number;
  readonly subnetBantimeMs: number;
  /** what one failure may weigh at most: a counted target this close to its threshold is reported on the brink */
  readonly reach: number;
}

/** One call of record-activity.lua: the reply as it comes, decoded by the caller (it knows the batch). */
export interface ActivityCall {
  /** any key of the node the call must run on (ioredis routes by it) */
  readonly routingKey: string;
  readonly now: number;
  /** `<tag>|<target>|…` per entry (record-activity.lua) */
  readonly entries: readonly string[];
}

export interface BanArgs {
  readonly record: string;
  readonly index: string;
  /** `<prefix>{<tag>}` */
  readonly base: string;
  readonly target: string;
  readonly now: number;
  readonly until: number;
  /** already encoded */
  readonly reason: string;
  /** already encoded, may be empty */
  readonly note: string;
  readonly windowEpochMs: number;
  readonly node: string;
  readonly historyTtlMs: number;
  readonly historyCap: number;
}

export interface UnbanArgs {
  readonly record: string;
  readonly index: string;
  readonly base: string;
  readonly target: string;
  readonly now: number;
  readonly windowEpochMs: number;
}

export interface RestoreBanArgs extends UnbanArgs {
  readonly until: number;
  readonly bannedAt: number;
  /** already encoded */
  readonly reason: string;
  readonly codes: string;
  readonly count: number;
  readonly first: number;
  readonly last: number;
  readonly node: string;
  readonly historyTtlMs: number;
  readonly historyCap: number;
  /** already encoded */
  readonly account: string;
  /** already encoded */
  readonly note: string;
  /** a subnet ban's members, `,`-separated canonical targets; '' for any other ban */
  readonly members: string;
  /** re-seeding: a ban in force is only extended, with no history entry (restore-ban.lua) */
  readonly extend?: boolean;
}

export interface StoreScripts {
  recordActivity(call: ActivityCall): Promise<unknown[]>;
  /** resolves to the number of history entries before this ban */
  ban(a: BanArgs): Promise<number>;
  /** resolves to whether a ban was in force */
  unban(a: UnbanArgs): Promise<boolean>;
  /**
   * whether the ban was written, or a ban in force extended to it (only with `extend`); neither: one as long is
   * already there, or it is over. And the until in force (0: none).
   */
  restoreBan(a: RestoreBanArgs): Promise<{ written: boolean; extended: boolean; until: number }>;
  /** escalate.lua: the reply as it comes, decoded by the caller */
  escalate(call: ActivityCall): Promise<unknown[]>;
  /** active-bans.lua: two items per bucket of `tags`, decoded by the caller */
  activeBans(routingKey: string, now: number, tags: readonly string[]): Promise<unknown[]>;
}

/** Registers the scripts on `client` (once per client) and returns typed wrappers. */
export function storeScripts(client: Redis | Cluster, prefix: string, rule: ActivityRule): StoreScripts {
  const src = loadSources();
  for (const name of Object.keys(SCRIPTS) as ScriptName[]) {
    const { command, keys } = SCRIPTS[name];
    if (!(command in client)) client.defineCommand(command, { lua: src[name], numberOfKeys: keys });
  }
  const c = client as unknown as DefinedCommands;
  const b = rule.ban;
  // ARGV[3..21]: the same for every call but the jitter seed, which is drawn per call
  const head: Arg[] = [
    rule.windowEpochMs,
    rule.maxretry,
    rule.findtimeMs,
    rule.trustMaxretry,
    rule.offenderMaxretry,
    rule.scannerMaxretry,
    rule.scannerFindtimeMs,
    rule.trustTtlMs,
    b.bantimeMs,
    b.factor,
    b.maxtimeMs,
    b.rndtimeMs,
    0,
    b.recidiveMaxretry,
    b.recidiveFindtimeMs,
    b.recidiveBantimeMs,
    b.historyTtlMs,
    b.historyCap,
    b.node,
  ];
  const SEED = 12;
  // escalate.lua's ARGV[3..18]: its own head, then the same ban rule block
  const escalateHead: Arg[] = [
    rule.windowEpochMs,
    rule.findtimeMs,
    rule.subnetMaxbans,
    rule.subnetBantimeMs,
    rule.trustTtlMs,
    ...head.slice(8),
  ];
  // args[k] is ARGV[k] (args[0] is KEYS[1]): the seed is +4 of the block at ARGV[8]
  const ESCALATE_SEED = 12;

  return {
    async recordActivity(call) {
      const args: Arg[] = [call.routingKey, prefix, call.now, ...head, call.now.toString(36), rule.reach, ...call.entries];
      if (b.rndtimeMs > 0) args[3 + SEED] = Math.floor(Math.random() * 2 ** 31);
      const reply = await c.amiGuardRecordActivity(...args);
      if (!Array.isArray(reply) || typeof reply[0] !== 'string') {
        throw new TypeError(`unexpected reply from record-activity.lua: ${JSON.stringify(reply)?.slice(0, 200)}`);
      }
      return reply;
    },
    async escalate(call) {
      const args: Arg[] = [call.routingKey, prefix, call.now, ...escalateHead, call.now.toString(36), ...call.entries];
      if (b.rndtimeMs > 0) args[ESCALATE_SEED] = Math.floor(Math.random() * 2 ** 31);
      const reply = await c.amiGuardEscalate(...args);
      if (!Array.isArray(reply)) throw new TypeError(`unexpected reply from escalate.lua: ${JSON.stringify(reply)?.slice(0, 200)}`);
      return reply;
    },
    async activeBans(routingKey, now, tags) {
      const reply = await c.amiGuardActiveBans(routingKey, prefix, now, ...tags);
      if (!Array.isArray(reply) || reply.length !== 2 * tags.length) {
        throw new TypeError(`unexpected reply from active-bans.lua: ${JSON.stringify(reply)?.slice(0, 200)}`);
      }
      return reply;
    },
    async ban(a) {
      const reply = await c.amiGuardBan(
        a.record,
        a.index,
        a.base,
        a.target,
        a.now,
        a.until,
        a.reason,
        a.note,
        a.windowEpochMs,
        a.node,
        a.historyTtlMs,
        a.historyCap,
      );
      return integer(reply, 'ban.lua');
    },
    async unban(a) {
      return integer(await c.amiGuardUnban(a.record, a.index, a.base, a.target, a.now, a.windowEpochMs), 'unban.lua') === 1;
    },
    async restoreBan(a) {
      const reply = await c.amiGuardRestoreBan(
        a.record,
        a.index,
        a.base,
        a.target,
        a.now,
        a.until,
        a.bannedAt,
        a.reason,
        a.codes,
        a.count,
        a.first,
        a.last,
        a.node,
        a.historyTtlMs,
        a.historyCap,
        a.account,
        a.note,
        a.windowEpochMs,
        a.extend ? '1' : '0',
        a.members,
      );
      if (!Array.isArray(reply) || reply.length !== 2)
        throw new TypeError(`unexpected reply from restore-ban.lua: ${JSON.stringify(reply)}`);
      const outcome = integer(reply[0], 'restore-ban.lua');
      return { written: outcome === 1, extended: outcome === 2, until: integer(reply[1], 'restore-ban.lua') };
    },
  };
}

export function integer(v: unknown, script: string): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw new TypeError(`unexpected reply from ${script}: ${JSON.stringify(v)}`);
  return n;
}
