// Typed wrappers around the Lua scripts in ./lua/. ioredis defineCommand sends EVALSHA and falls back to EVAL on
// NOSCRIPT, so a script flush or a failover to a fresh replica needs no handling here. Each script touches only
// the keys of one target, which share a hash tag, so the same wrappers work on a Redis Cluster.
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import type { TargetKeys } from './keys.js';

const LUA_DIR = new URL('./lua/', import.meta.url);

const SCRIPTS = {
  recordFailure: { file: 'record-failure.lua', command: 'amiGuardRecordFailure', keys: 4, include: true },
  recordChallenge: { file: 'record-challenge.lua', command: 'amiGuardRecordChallenge', keys: 3, include: true },
  recordSuccess: { file: 'record-success.lua', command: 'amiGuardRecordSuccess', keys: 2, include: false },
  ban: { file: 'ban.lua', command: 'amiGuardBan', keys: 3, include: false },
  unban: { file: 'unban.lua', command: 'amiGuardUnban', keys: 3, include: false },
  restoreBan: { file: 'restore-ban.lua', command: 'amiGuardRestoreBan', keys: 2, include: false },
} as const;

type ScriptName = keyof typeof SCRIPTS;
export type Arg = string | number;

/** What defineCommand adds to a client, by the command names above. */
type DefinedCommands = Record<(typeof SCRIPTS)[ScriptName]['command'], (...args: Arg[]) => Promise<unknown>>;

let sources: Record<ScriptName, string> | undefined;

/** Reads each script once; the shared ban logic is prepended where a script can decide a ban. */
function loadSources(): Record<ScriptName, string> {
  if (!sources) {
    const include = readFileSync(new URL('include/ban.lua', LUA_DIR), 'utf8');
    const read = (name: ScriptName): string => {
      const body = readFileSync(new URL(SCRIPTS[name].file, LUA_DIR), 'utf8');
      return SCRIPTS[name].include ? `${include}\n${body}` : body;
    };
    sources = {
      recordFailure: read('recordFailure'),
      recordChallenge: read('recordChallenge'),
      recordSuccess: read('recordSuccess'),
      ban: read('ban'),
      unban: read('unban'),
      restoreBan: read('restoreBan'),
    };
  }
  return sources;
}

/** How long a ban lasts and when it becomes recidive: the ARGV block of include/ban.lua. */
export interface BanRule {
  readonly bantimeMs: number;
  readonly factor: number;
  readonly maxtimeMs: number;
  /** drawn by the caller in [0, rndtime], so the script itself stays deterministic */
  readonly jitterMs: number;
  readonly recidiveMaxretry: number;
  readonly recidiveFindtimeMs: number;
  readonly recidiveBantimeMs: number;
  readonly historyTtlMs: number;
  readonly historyCap: number;
  readonly node: string;
}

/** The ban block as script arguments; callers build it once and reuse it (it is the same for every event). */
export function banBlock(r: BanRule): readonly Arg[] {
  return [
    r.bantimeMs, r.factor, r.maxtimeMs, r.jitterMs, r.recidiveMaxretry, r.recidiveFindtimeMs, r.recidiveBantimeMs,
    r.historyTtlMs, r.historyCap, r.node,
  ];
}

export interface RecordFailureArgs {
  readonly now: number;
  /** must not contain `|`, the entry separator */
  readonly kind: string;
  readonly account: string;
  readonly weight: number;
  readonly maxretry: number;
  readonly findtimeMs: number;
  readonly trustMaxretry: number;
  readonly offenderMaxretry: number;
  /** banBlock(rule) */
  readonly banArgs: readonly Arg[];
}

export interface RecordChallengeArgs {
  readonly now: number;
  readonly maxretry: number;
  readonly findtimeMs: number;
  /** banBlock(rule) */
  readonly banArgs: readonly Arg[];
}

export type RecordReply =
  | { readonly type: 'counted'; readonly count: number; readonly threshold: number }
  | { readonly type: 'already-banned'; readonly until: number }
  | {
      readonly type: 'banned';
      readonly count: number;
      readonly kinds: Record<string, number>;
      readonly first: number;
      readonly last: number;
      readonly prev: number;
      readonly reason: string;
      readonly until: number;
    };

export interface BanArgs {
  readonly now: number;
  readonly until: number;
  readonly reason: string;
  readonly node: string;
  readonly historyTtlMs: number;
  readonly historyCap: number;
  readonly note: string;
}

export interface StoreScripts {
  recordFailure(keys: TargetKeys, args: RecordFailureArgs): Promise<RecordReply>;
  recordChallenge(keys: TargetKeys, args: RecordChallengeArgs): Promise<RecordReply>;
  recordSuccess(keys: TargetKeys, args: { now: number; trustTtlMs: number; trust: boolean }): Promise<void>;
  /** resolves to the number of history entries before this ban */
  ban(keys: TargetKeys, args: BanArgs): Promise<number>;
  /** resolves to whether a ban existed */
  unban(keys: TargetKeys): Promise<boolean>;
  /** whether the ban was written (no: one as long is already there, or it is over), and the until in force (0: none) */
  restoreBan(keys: TargetKeys, args: RestoreBanArgs): Promise<{ written: boolean; until: number }>;
}

export interface RestoreBanArgs {
  readonly now: number;
  readonly until: number;
  readonly bannedAt: number;
  readonly reason: string;
  readonly kinds: Record<string, number>;
  readonly count: number;
  readonly first: number;
  readonly last: number;
  readonly node: string;
  readonly historyTtlMs: number;
  readonly historyCap: number;
}

/** Registers the scripts on `client` (once per client) and returns typed wrappers. */
export function storeScripts(client: Redis | Cluster): StoreScripts {
  const src = loadSources();
  for (const name of Object.keys(SCRIPTS) as ScriptName[]) {
    const { command, keys } = SCRIPTS[name];
    if (!(command in client)) client.defineCommand(command, { lua: src[name], numberOfKeys: keys });
  }
  const c = client as unknown as DefinedCommands;

  return {
    async recordFailure(keys, a) {
      const reply = await c.amiGuardRecordFailure(
        keys.fail, keys.ban, keys.hist, keys.trust,
        a.now, a.kind, a.account, a.weight, a.maxretry, a.findtimeMs, a.trustMaxretry, a.offenderMaxretry,
        ...a.banArgs,
      );
      return parseRecordReply(reply, 'record-failure.lua');
    },
    async recordChallenge(keys, a) {
      const reply = await c.amiGuardRecordChallenge(keys.chal, keys.ban, keys.hist, a.now, a.maxretry, a.findtimeMs, ...a.banArgs);
      return parseRecordReply(reply, 'record-challenge.lua');
    },
    async recordSuccess(keys, a) {
      await c.amiGuardRecordSuccess(keys.chal, keys.trust, a.now, a.trustTtlMs, a.trust ? '1' : '0');
    },
    async ban(keys, a) {
      const reply = await c.amiGuardBan(
        keys.ban, keys.hist, keys.fail,
        a.now, a.until, a.until - a.now, a.reason, a.node, a.historyTtlMs, a.historyCap, a.note,
      );
      return integer(reply, 'ban.lua');
    },
    async unban(keys) {
      return integer(await c.amiGuardUnban(keys.ban, keys.fail, keys.chal), 'unban.lua') === 1;
    },
    async restoreBan(keys, a) {
      const reply = await c.amiGuardRestoreBan(
        keys.ban, keys.hist,
        a.now, a.until, a.bannedAt, a.reason, JSON.stringify(a.kinds), a.count, a.first, a.last, a.node,
        a.historyTtlMs, a.historyCap,
      );
      if (!Array.isArray(reply) || reply.length !== 2) throw new Error(`unexpected reply from restore-ban.lua: ${JSON.stringify(reply)}`);
      return { written: integer(reply[0], 'restore-ban.lua') === 1, until: integer(reply[1], 'restore-ban.lua') };
    },
  };
}

function parseRecordReply(reply: unknown, script: string): RecordReply {
  if (Array.isArray(reply)) {
    const [type, a, b, first, last, prev, reason, until] = reply as unknown[];
    switch (type) {
      case 'counted':
        return { type, count: integer(a, script), threshold: integer(b, script) };
      case 'already-banned':
        return { type, until: integer(a, script) };
      case 'banned':
        return {
          type,
          count: integer(a, script),
          kinds: parseKinds(b),
          first: integer(first, script),
          last: integer(last, script),
          prev: integer(prev, script),
          reason: typeof reason === 'string' ? reason : 'failures',
          until: integer(until, script),
        };
    }
  }
  throw new Error(`unexpected reply from ${script}: ${JSON.stringify(reply)}`);
}

function integer(v: unknown, script: string): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw new Error(`unexpected reply from ${script}: ${JSON.stringify(v)}`);
  return n;
}

/** Parses the `kinds` JSON of a ban record; anything malformed (an older or tampered record) reads as no counts. */
export function parseKinds(json: unknown): Record<string, number> {
  if (typeof json !== 'string') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return {};
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
  // fromEntries defines own properties, so even a kind named `__proto__` stays a plain count
  return Object.fromEntries(Object.entries(parsed).filter((e): e is [string, number] => typeof e[1] === 'number'));
}
