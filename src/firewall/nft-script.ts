// Builds nft script text. This is the only place where ban targets become nft syntax, so every value is checked
// here whatever its static type claims: a target that did not come from the IP parser is refused (`instanceof`, no
// second parse), and so is one whose text could be anything but an address; the table name is checked once at
// construction. Nothing else is ever interpolated into a script.
import { isParsedTarget, unbannableReason, type IpFamily, type IpTarget } from '../net/ip.js';
import type { FirewallBan } from './firewall.js';
import type { SetChanges } from './set-diff.js';

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;

export interface SetSpec {
  readonly name: string;
  readonly family: IpFamily;
  /** nft key type, as `nft -j` prints it */
  readonly type: 'ipv4_addr' | 'ipv6_addr';
  /** as `nft -j` prints them, in that order */
  readonly flags: readonly string[];
}

/**
 * Host bans live in plain hash sets: nft 1.0.6 reads a whole interval set into memory for every command touching
 * it (one add at 100k elements: ~2 s), while a hash set add costs the same at 100k as when empty. Networks need
 * interval sets; they are operator bans, few, so that cost stays small. Listed in rule order: hosts, the many, first.
 */
export const SETS: readonly SetSpec[] = [
  { name: 'banned_v4', family: 4, type: 'ipv4_addr', flags: ['timeout'] },
  { name: 'banned_v4_net', family: 4, type: 'ipv4_addr', flags: ['interval', 'timeout'] },
  { name: 'banned_v6', family: 6, type: 'ipv6_addr', flags: ['timeout'] },
  { name: 'banned_v6_net', family: 6, type: 'ipv6_addr', flags: ['interval', 'timeout'] },
];

export const CHAIN_NAME = 'prerouting';
/** `priority raw` as `nft -j` prints it */
export const CHAIN_PRIORITY = -300;
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

/** what a canonical address or network can contain: parsed instances are not frozen, so a mutated one is caught */
const ELEMENT_CHARS = /^[0-9a-f.:]{2,39}(?:\/\d{1,3})?$/;

/** The target's nft spelling; throws unless it came from the IP parser and its text is an address of its family. */
export function elementText(target: IpTarget): string {
  const text: unknown = (target as { text?: unknown } | null)?.text;
  if (!isParsedTarget(target) || typeof text !== 'string' || !ELEMENT_CHARS.test(text)) {
    throw new Error(`refusing non-canonical nft element ${describe(text)}: not an address from the IP parser`);
  }
  const claimed = target.family;
  // canonical IPv6 text always has a colon and canonical IPv4 never does (mapped addresses are folded to IPv4)
  if ((text.includes(':') ? 6 : 4) !== claimed) {
    throw new Error(`refusing nft element ${describe(text)}: not IPv${String(claimed)}`);
  }
  return text;
}

/** The set holding a family's network bans. */
export function netSet(family: IpFamily): SetSpec {
  return SETS.find((s) => s.family === family && s.flags.includes('interval'))!;
}

/** The set for an element already checked by elementText: a network's text has a slash, IPv6 text a colon. */
function setOf(element: string): SetSpec {
  const family = element.includes(':') ? 6 : 4;
  return SETS.find((s) => s.family === family && s.flags.includes('interval') === element.includes('/'))!;
}

/**
 * A ban as `<element> timeout <n>s`. Refuses non-canonical text, a bad timeout, and a target whose ban would cut
 * the host off from itself (a raw-prerouting drop of 127.0.0.1 or 0.0.0.0/0 also drops local traffic).
 */
function timedElement(ban: FirewallBan): string {
  return `${checkedElement(ban)} timeout ${timeoutSeconds(ban.timeoutMs)}s`;
}

/** The element text of a ban that may be written; throws as timedElement does, without building its statement. */
function checkedElement(ban: FirewallBan): string {
  const text = elementText(ban.target);
  const reason = unbannableReason(ban.target);
  if (reason) throw new Error(`refusing to ban ${text}: ${reason} address`);
  timeoutSeconds(ban.timeoutMs);
  return text;
}

/** Throws on the first ban that could not be written; lets callers refuse a ban before queueing it. */
export function assertBans(bans: readonly FirewallBan[]): void {
  for (const ban of bans) checkedElement(ban);
}

function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += CHUNK_SIZE) out.push(items.slice(i, i + CHUNK_SIZE));
  return out;
}

/** groups checked elements by destination set, in SETS order, leaving out empty groups */
function bySet(elements: readonly string[]): [SetSpec, string[]][] {
  const groups = new Map<SetSpec, string[]>(SETS.map((s) => [s, []]));
  for (const element of elements) groups.get(setOf(element))!.push(element);
  return [...groups].filter(([, group]) => group.length > 0);
}

function lines(statements: readonly string[]): string {
  return statements.map((l) => `${l}\n`).join('');
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
    return lines([
      `add table ${t}`,
      ...SETS.map((s) => `add set ${t} ${s.name} { type ${s.type}; flags ${s.flags.join(', ')}; }`),
      `add chain ${t} ${CHAIN_NAME} { type filter hook prerouting priority raw; policy accept; }`,
      `flush chain ${t} ${CHAIN_NAME}`,
      ...SETS.map((s) => `add rule ${t} ${CHAIN_NAME} ${s.family === 4 ? 'ip' : 'ip6'} saddr @${s.name} counter drop`),
    ]);
  }

  /** Drops the table and creates it anew holding these bans, as one transaction: no moment without our drops. */
  rebuild(bans: readonly FirewallBan[]): string {
    return `delete table inet ${this.table}\n${this.init()}${this.add(bans, false)}`;
  }

  /**
   * Adds bans with their timeouts. On newer kernels (nf_tables "set element timeout update support", 2024)
   * re-adding a present element also replaces its timeout; with `replaceTimeouts` each element is added, deleted and
   * added again in the transaction so older kernels replace it too. In a hash set that costs ~15 ms more per
   * transaction whatever the set size; in an interval set nft 1.0.6 handles each deletion against its copy of the set.
   */
  add(bans: readonly FirewallBan[], replaceTimeouts: boolean): string {
    const out: string[] = [];
    for (const [set, timed] of bySet(bans.map(timedElement))) {
      if (replaceTimeouts) {
        const bare = timed.map((t) => t.slice(0, t.indexOf(' ')));
        out.push(...this.statements('add', set, bare), ...this.statements('delete', set, bare));
      }
      out.push(...this.statements('add', set, timed));
    }
    return lines(out);
  }

  /**
   * Deletes elements; adding each first makes an absent one a no-op instead of "element does not exist". The bare
   * add would clear a present element's timeout, but the delete follows in the same transaction.
   */
  delete(targets: readonly IpTarget[]): string {
    const out: string[] = [];
    for (const [set, texts] of bySet(targets.map(elementText))) {
      out.push(...this.statements('add', set, texts), ...this.statements('delete', set, texts));
    }
    return lines(out);
  }

  /**
   * Replaces the networks a wider one covers by it, atomically. This deletes exactly and adds once: nft 1.0.6
   * checks interval overlaps against its copy of the set, and only this shape passes that check while the covered
   * elements are still there (an add+delete of either first is refused).
   */
  supersede(covered: readonly IpTarget[], network: FirewallBan): string {
    const out: string[] = [];
    for (const [set, texts] of bySet(covered.map(elementText))) out.push(...this.statements('delete', set, texts));
    const timed = timedElement(network);
    out.push(...this.statements('add', setOf(timed), [timed]));
    return lines(out);
  }

  /** Empties all four sets and loads exactly these bans; nft applies the whole script as one transaction. */
  replaceAll(bans: readonly FirewallBan[]): string {
    return lines(SETS.map((s) => `flush set inet ${this.table} ${s.name}`)) + this.add(bans, false);
  }

  /**
   * A reconciliation's changes to sets it has just read (set-diff.ts), as one transaction; empty when nothing changes.
   * Hosts that go are added bare first, so one that lapsed meanwhile is no error; hosts whose end is off are added,
   * deleted and added again, which replaces the timeout on every kernel and gives one to an element without; a
   * network set that differs is flushed and loaded.
   */
  update(changes: SetChanges): string {
    let out = '';
    if (changes.remove.length > 0) out += this.delete(changes.remove);
    if (changes.add.length > 0) out += this.add(changes.add, false);
    if (changes.refresh.length > 0) out += this.add(changes.refresh, true);
    for (const [family, bans] of changes.reload) {
      out += `flush set inet ${this.table} ${netSet(family).name}\n${this.add(bans, false)}`;
    }
    return out;
  }

  /**
   * Asks the kernel whether one element is there without reading the set: `create` fails with "File exists" when it
   * is (and with an overlap when a network lies inside a wider element), and when it is not, the delete that follows
   * in the same transaction takes it out again, so nothing changes either way. `get element` would do, but nft 1.0.6
   * reads the whole set for it: ~0.4 s at 100k elements, against ~0.5 ms for this.
   */
  probe(target: IpTarget): string {
    const text = elementText(target);
    const set = `inet ${this.table} ${setOf(text).name}`;
    return `create element ${set} { ${text} }\ndelete element ${set} { ${text} }\n`;
  }

  /** the name of the set holding a target */
  setName(target: IpTarget): string {
    return setOf(elementText(target)).name;
  }

  /** `nft list set …`: nft 1.0.6 then reads only that set's elements, not the 100k of a host set beside it */
  listSetCommand(set: SetSpec): string[] {
    return ['list', 'set', 'inet', this.table, set.name];
  }

  /**
   * Our table's sets, chain and rules without elements, for terse (-t) JSON. `list table` would read every element
   * even with -t (1.2 s at 100k on nft 1.0.6); listing the inet ruleset tersely does not (~7 ms). It shows other
   * inet tables too, which the reader skips.
   */
  layoutCommand(): string[] {
    return ['list', 'ruleset', 'inet'];
  }

  /**
   * Learns whether this kernel replaces the timeout of a re-added element, in a scratch hash set of our own table
   * shaped like the host sets, as the daemon does it: apply probeSetup(), then probeReAdd() as a later transaction,
   * read probeCommand(); a timeout of 2000 s means yes. dropProbe() removes the set.
   */
  probeSetup(): string {
    const set = `inet ${this.table} ${PROBE_SET}`;
    return lines([
      `add set ${set} { type ipv4_addr; flags timeout; }`,
      `flush set ${set}`,
      `add element ${set} { ${PROBE_ELEMENT} timeout 1000s }`,
    ]);
  }

  probeReAdd(): string {
    return `add element inet ${this.table} ${PROBE_SET} { ${PROBE_ELEMENT} timeout 2000s }\n`;
  }

  probeCommand(): string[] {
    return ['list', 'set', 'inet', this.table, PROBE_SET];
  }

  dropProbe(): string {
    return `delete set inet ${this.table} ${PROBE_SET}\n`;
  }

  private statements(verb: 'add' | 'delete', set: SetSpec, elements: readonly string[]): string[] {
    return chunks(elements).map((c) => `${verb} element inet ${this.table} ${set.name} { ${c.join(', ')} }`);
  }
}
