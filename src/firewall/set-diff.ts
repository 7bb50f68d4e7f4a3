// What a reconciliation must change in sets it has just read (a restart into a table a previous run filled), instead of
// flushing and reloading 100k elements: the hosts the store no longer holds go, those it holds that are missing are
// added, and a host whose kernel end is off from the store's is added again with the right timeout. A network set is
// replaced whole (flush and load in the same transaction) when anything in it differs: networks are few, and nft 1.0.6
// checks every interval change against its copy of the set, which a wholesale load avoids.
import { ipv4, type IpFamily, type IpTarget } from '../net/ip.js';
import type { FirewallBan } from './firewall.js';
import { MAX_TIMEOUT_S } from './nft-script.js';
import { hostKey } from './set-dump.js';

/**
 * A kernel element may end this long after the store's ban and be left alone: a timeout is whole seconds rounded up
 * (up to 1 s late), counted from when it was written, a little after the store's time was read (a reconciliation of
 * 100k under load: ~2 s). An element ending before the store's ban is always written again.
 */
export const LATE_MS = 6_000;

/** what the sets held when read; every end in ms since the epoch, never later than the kernel's own */
export interface KernelPicture {
  /** IPv4 hosts (uint32 `| 0`) → end */
  readonly v4: Map<number, number>;
  /** IPv6 hosts by hostKey() */
  readonly v6: Map<string, { readonly target: IpTarget; readonly end: number }>;
  /** the elements of each family's network set */
  readonly nets: ReadonlyMap<IpFamily, ReadonlyArray<{ readonly target: IpTarget; readonly end: number }>>;
}

export interface SetChanges {
  /** hosts to delete */
  readonly remove: IpTarget[];
  /** hosts not there, to add */
  readonly add: FirewallBan[];
  /** hosts there with another end, to add again with a fresh timeout */
  readonly refresh: FirewallBan[];
  /** network sets to flush and load with these, by family (only those that differ) */
  readonly reload: Map<IpFamily, FirewallBan[]>;
  /** every element that goes: the hosts removed and the networks not loaded again */
  readonly removed: IpTarget[];
  /** targets of the bans that were not in the sets */
  readonly added: number;
}

/** Whether an element ending at `end` serves a ban of `timeoutMs` counted from `at` (capped as nft caps it). */
export function endsInTime(end: number, at: number, timeoutMs: number): boolean {
  const wanted = at + Math.min(timeoutMs, MAX_TIMEOUT_S * 1000);
  return end >= wanted && end <= wanted + LATE_MS;
}

/**
 * The changes that make the pictured sets hold exactly `bans` (one per target, networks already folded), their
 * timeouts counted from `at`. Takes the picture's host maps apart as it goes.
 */
export function diffSets(picture: KernelPicture, bans: readonly FirewallBan[], at: number): SetChanges {
  const add: FirewallBan[] = [];
  const refresh: FirewallBan[] = [];
  const nets = new Map<IpFamily, FirewallBan[]>([
    [4, []],
    [6, []],
  ]);
  for (const ban of bans) {
    const t = ban.target;
    if (t.kind === 'prefix') {
      nets.get(t.family)!.push(ban);
      continue;
    }
    let end: number | undefined;
    if (t.family === 4) {
      const key = t.words[0]! | 0;
      end = picture.v4.get(key);
      if (end !== undefined) picture.v4.delete(key);
    } else {
      const key = hostKey(t.words);
      end = picture.v6.get(key)?.end;
      if (end !== undefined) picture.v6.delete(key);
    }
    if (end === undefined) add.push(ban);
    else if (!endsInTime(end, at, ban.timeoutMs)) refresh.push(ban);
  }
  const remove: IpTarget[] = [];
  for (const n of picture.v4.keys()) remove.push(ipv4(n >>> 0));
  for (const { target } of picture.v6.values()) remove.push(target);
  const removed = [...remove];
  let added = add.length;
  const reload = new Map<IpFamily, FirewallBan[]>();
  for (const [family, wanted] of nets) {
    const there = new Map((picture.nets.get(family) ?? []).map((e) => [e.target.text, e]));
    let same = there.size === wanted.length;
    for (const ban of wanted) {
      const e = there.get(ban.target.text);
      if (e === undefined) added++;
      if (e === undefined || !endsInTime(e.end, at, ban.timeoutMs)) same = false;
    }
    if (same) continue;
    reload.set(family, wanted);
    const kept = new Set(wanted.map((b) => b.target.text));
    for (const e of there.values()) if (!kept.has(e.target.text)) removed.push(e.target);
  }
  return { remove, add, refresh, reload, removed, added };
}
