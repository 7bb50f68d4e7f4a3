// Builds nft script text. This is the only place where ban targets become nft syntax, so every value is re-checked
// here whatever its static type claims: a target whose text is not exactly what parseTarget produces is refused,
// and the table name is checked once at construction. Nothing else is ever interpolated into a script.
import { isCanonicalTarget, unbannableReason, type IpFamily, type IpTarget } from '../net/ip.js';
import type { FirewallBan } from './firewall.js';

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;

export const SET_NAMES: Readonly<Record<IpFamily, string>> = { 4: 'banned_v4', 6: 'banned_v6' };
export const CHAIN_NAME = 'prerouting';
const PROBE_SET = 'timeout_probe';
const PROBE_ELEMENT = '192.0.2.1';

/** nft 1.0.6 refuses `timeout 100000000s` as "value too large"; longer bans are capped at about 3.17 years */
export const MAX_TIMEOUT_S = 99_999_999;

/** elements per `add element` statement; load time measured flat from 1k to 100k, smaller keeps error lines short */
export const CHUNK_SIZE = 5000;

/** The kernel timeout for a ban: whole seconds, rounded up so a ban never ends early, at least 1 s. */
export function timeoutSeconds(ms: number): number {
  if (typeof ms !== 'number' || Number.isNaN(ms)) {
    throw new TypeError(`ban timeout must be a number of ms, got ${String(ms)}`);
  }
  return Math.min(MAX_TIMEOUT_S, Math.max(1, Math.ceil(ms / 1000)));
}

function describe(value: unknown): string {
  const text = typeof value === 'string' ? value : String(value);
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

/** The target's nft spelling; throws unless it is exactly a canonical address or network of the claimed family. */
export function elementText(target: IpTarget): string {
  const claimed: unknown = (target as { family?: unknown } | null)?.family;
  const text: unknown = (target as { text?: unknown } | null)?.text;
  if (typeof text !== 'string' || !isCanonicalTarget(text)) {
    throw new Error(`refusing non-canonical nft element ${describe(text)}`);
  }
  // canonical IPv6 text always has a colon and canonical IPv4 never does (mapped addresses are folded to IPv4)
  if ((text.includes(':') ? 6 : 4) !== claimed) {
    throw new Error(`refusing nft element ${describe(text)}: not IPv${String(claimed)}`);
  }
  return text;
}

/**
 * A ban as `<element> timeout <n>s`. Refuses non-canonical text, a bad timeout, and a target whose ban would cut
 * the host off from itself (a raw-prerouting drop of 127.0.0.1 or 0.0.0.0/0 also drops local traffic).
 */
function timedElement(ban: FirewallBan): string {
  const text = elementText(ban.target);
  const reason = unbannableReason(ban.target);
  if (reason) throw new Error(`refusing to ban ${text}: ${reason} address`);
  return `${text} timeout ${timeoutSeconds(ban.timeoutMs)}s`;
}

/** Throws on the first ban that could not be written; lets callers refuse a ban before queueing it. */
export function assertBans(bans: readonly FirewallBan[]): void {
  bans.forEach(timedElement);
}

function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += CHUNK_SIZE) out.push(items.slice(i, i + CHUNK_SIZE));
  return out;
}

function byFamily<T>(items: readonly T[], family: (item: T) => IpFamily): [IpFamily, T[]][] {
  const groups: [IpFamily, T[]][] = [[4, []], [6, []]];
  for (const item of items) groups[family(item) === 4 ? 0 : 1]![1].push(item);
  return groups.filter(([, group]) => group.length > 0);
}

export class NftScript {
  readonly table: string;

  constructor(table: string) {
    if (typeof table !== 'string' || !TABLE_NAME.test(table)) {
      throw new Error(`invalid nft table name ${describe(table)}: letters, digits and _ only, at most 32`);
    }
    this.table = table;
  }

  /**
   * Creates what is missing and leaves existing elements alone; the chain is flushed and refilled so a re-run
   * repairs an edited chain. Priority raw drops before conntrack, so an operator's `ct state established accept`
   * cannot carry a banned source's already-tracked flow past us (fail2ban #2503).
   */
  init(): string {
    const t = `inet ${this.table}`;
    return [
      `add table ${t}`,
      `add set ${t} ${SET_NAMES[4]} { type ipv4_addr; flags interval, timeout; }`,
      `add set ${t} ${SET_NAMES[6]} { type ipv6_addr; flags interval, timeout; }`,
      `add chain ${t} ${CHAIN_NAME} { type filter hook prerouting priority raw; policy accept; }`,
      `flush chain ${t} ${CHAIN_NAME}`,
      `add rule ${t} ${CHAIN_NAME} ip saddr @${SET_NAMES[4]} counter drop`,
      `add rule ${t} ${CHAIN_NAME} ip6 saddr @${SET_NAMES[6]} counter drop`,
      '',
    ].join('\n');
  }

  /**
   * Adds bans with their timeouts. On newer kernels (nf_tables "set element timeout update support", 2024)
   * re-adding a present element also replaces its timeout; with `replaceTimeouts` each element is added, deleted and
   * added again in the transaction so older kernels replace it too. That costs far more: nft 1.0.6 handles each
   * interval deletion against its copy of the whole set (2000 refreshes into an empty set: ~1 s instead of ~60 ms).
   */
  add(bans: readonly FirewallBan[], replaceTimeouts: boolean): string {
    const lines: string[] = [];
    for (const [family, group] of byFamily(bans, (b) => b.target.family)) {
      const timed = group.map(timedElement);
      if (replaceTimeouts) {
        const bare = timed.map((t) => t.slice(0, t.indexOf(' ')));
        lines.push(...this.statements('add', family, bare), ...this.statements('delete', family, bare));
      }
      lines.push(...this.statements('add', family, timed));
    }
    return lines.map((l) => `${l}\n`).join('');
  }

  /** Deletes elements; adding each first makes an absent one a no-op instead of "element does not exist". */
  delete(targets: readonly IpTarget[]): string {
    const lines: string[] = [];
    for (const [family, group] of byFamily(targets, (t) => t.family)) {
      const texts = group.map(elementText);
      lines.push(...this.statements('add', family, texts), ...this.statements('delete', family, texts));
    }
    return lines.map((l) => `${l}\n`).join('');
  }

  /**
   * Replaces the elements a network covers by the network, atomically. This deletes exactly and adds once: nft 1.0.6
   * checks interval overlaps against its copy of the set, and only this shape passes that check while the covered
   * elements are still there (an add+delete of either first is refused).
   */
  supersede(covered: readonly IpTarget[], network: FirewallBan): string {
    const lines: string[] = [];
    for (const [family, group] of byFamily(covered, (t) => t.family)) {
      lines.push(...this.statements('delete', family, group.map(elementText)));
    }
    lines.push(...this.statements('add', network.target.family, [timedElement(network)]));
    return lines.map((l) => `${l}\n`).join('');
  }

  /** Empties both sets and loads exactly these bans; nft applies the whole script as one transaction. */
  replaceAll(bans: readonly FirewallBan[]): string {
    const lines = [SET_NAMES[4], SET_NAMES[6]].map((set) => `flush set inet ${this.table} ${set}`);
    for (const [family, group] of byFamily(bans, (b) => b.target.family)) {
      lines.push(...this.statements('add', family, group.map(timedElement)));
    }
    return lines.map((l) => `${l}\n`).join('');
  }

  /** command words for `nft -j list table …` (with -t, without the elements) */
  listTableCommand(): string[] {
    return ['list', 'table', 'inet', this.table];
  }

  /**
   * Learns whether this kernel replaces the timeout of a re-added element, in a scratch set of our own table:
   * apply probeTimeoutUpdate(), read probeCommand(); a timeout of 2000 s means yes. dropProbe() removes the set.
   */
  probeTimeoutUpdate(): string {
    const set = `inet ${this.table} ${PROBE_SET}`;
    return [
      `add set ${set} { type ipv4_addr; flags interval, timeout; }`,
      `flush set ${set}`,
      `add element ${set} { ${PROBE_ELEMENT} timeout 1000s }`,
      `add element ${set} { ${PROBE_ELEMENT} timeout 2000s }`,
      '',
    ].join('\n');
  }

  probeCommand(): string[] {
    return ['list', 'set', 'inet', this.table, PROBE_SET];
  }

  dropProbe(): string {
    return `delete set inet ${this.table} ${PROBE_SET}\n`;
  }

  private statements(verb: 'add' | 'delete', family: IpFamily, elements: readonly string[]): string[] {
    return chunks(elements).map((c) => `${verb} element inet ${this.table} ${SET_NAMES[family]} { ${c.join(', ')} }`);
  }
}
