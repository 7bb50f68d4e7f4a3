// Typed wrappers around the Lua scripts in ./lua/. ioredis defineCommand sends EVALSHA and falls back to EVAL on
// NOSCRIPT, so a script flush or a failover to a fresh replica needs no handling here. Each script touches only
// the keys of one target, which share a hash tag, so the same wrappers work on a Redis Cluster.
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import type { TargetKeys } from './keys.js';

const LUA_DIR = new URL('./lua/', import.meta.url);

const SCRIPTS = {
  recordFailure: { file: 'record-failure.lua', command: 'amiGuardRecordFailure', keys: 3 },
  ban: { file: 'ban.lua', command: 'amiGuardBan', keys: 3 },
  unban: { file: 'unban.lua', command: 'amiGuardUnban', keys: 2 },
} as const;

type ScriptName = keyof typeof SCRIPTS;
type Arg = string | number;

/** What defineCommand adds to a client, by the command names above. */
type DefinedCommands = Record<(typeof SCRIPTS)[ScriptName]['command'], (...args: Arg[]) => Promise<unknown>>;

let sources: Record<ScriptName, string> | undefined;

function loadSources(): Record<ScriptName, string> {
  sources ??= {
    recordFailure: readFileSync(new URL(SCRIPTS.recordFailure.file, LUA_DIR), 'utf8'),
    ban: readFileSync(new URL(SCRIPTS.ban.file, LUA_DIR), 'utf8'),
    unban: readFileSync(new URL(SCRIPTS.unban.file, LUA_DIR), 'utf8'),
  };
  return sources;
}

export interface RecordFailureArgs {
  readonly now: number;
  /** must not contain `|`, the entry separator */
  readonly kind: string;
  readonly account: string;
  readonly weight: number;
  readonly maxretry: number;
  readonly findtimeMs: number;
  readonly bantimeMs: number;
  /** now + bantimeMs, computed once by the caller so the reply and the record agree */
  readonly until: number;
  readonly historyTtlMs: number;
  readonly historyCap: number;
  readonly node: string;
}

export type RecordFailureReply =
  | { readonly type: 'counted'; readonly count: number }
  | { readonly type: 'already-banned'; readonly until: number }
  | {
      readonly type: 'banned';
      readonly count: number;
      readonly kinds: Record<string, number>;
      readonly first: number;
      readonly last: number;
      readonly prev: number;
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
  recordFailure(keys: TargetKeys, args: RecordFailureArgs): Promise<RecordFailureReply>;
  /** resolves to the number of history entries before this ban */
  ban(keys: TargetKeys, args: BanArgs): Promise<number>;
  /** resolves to whether a ban existed */
  unban(keys: TargetKeys): Promise<boolean>;
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
        keys.fail, keys.ban, keys.hist,
        a.now, a.kind, a.account, a.weight, a.maxretry, a.findtimeMs, a.bantimeMs, a.until, a.historyTtlMs,
        a.historyCap, a.node,
      );
      return parseRecordFailureReply(reply);
    },
    async ban(keys, a) {
      const reply = await c.amiGuardBan(
        keys.ban, keys.hist, keys.fail,
        a.now, a.until, a.until - a.now, a.reason, a.node, a.historyTtlMs, a.historyCap, a.note,
      );
      return integer(reply, 'ban.lua');
    },
    async unban(keys) {
      return integer(await c.amiGuardUnban(keys.ban, keys.fail), 'unban.lua') === 1;
    },
  };
}

function parseRecordFailureReply(reply: unknown): RecordFailureReply {
  if (Array.isArray(reply)) {
    const [type, a, kinds, first, last, prev] = reply as unknown[];
    switch (type) {
      case 'counted':
        return { type, count: integer(a, 'record-failure.lua') };
      case 'already-banned':
        return { type, until: integer(a, 'record-failure.lua') };
      case 'banned':
        return {
          type,
          count: integer(a, 'record-failure.lua'),
          kinds: parseKinds(kinds),
          first: integer(first, 'record-failure.lua'),
          last: integer(last, 'record-failure.lua'),
          prev: integer(prev, 'record-failure.lua'),
        };
    }
  }
  throw new Error(`unexpected reply from record-failure.lua: ${JSON.stringify(reply)}`);
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
