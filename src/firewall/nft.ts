// The nftables backend: one `inet` table of our own holding two interval sets and a raw-priority drop chain.
// Every element carries its remaining ban time as a kernel timeout, so bans lapse on schedule even while we are down.
// Writes run one nft process at a time through an ordered queue; adds that pile up behind a running process are
// sent together as the next transaction.
import { createLogger, type Logger } from '../log.js';
import { parseTarget, prefixContains, type IpFamily, type IpTarget } from '../net/ip.js';
import type { Firewall, FirewallBan, FirewallElement, ReconcileResult } from './firewall.js';
import { NftError, SpawnNftRunner, type NftRunner } from './nft-runner.js';
import { assertBans, CHAIN_NAME, elementText, NftScript, SET_NAMES } from './nft-script.js';

export interface NftFirewallOptions {
  /** default 'ami_guard' */
  table?: string;
  /** default 'nft' */
  nftPath?: string;
  /** a name under /run/netns or an absolute namespace path; default: our own namespace */
  netns?: string;
  logger?: Logger;
  /** replaces the spawning runner (nftPath and netns are then unused) */
  runner?: NftRunner;
  /** whether re-adding an element replaces its kernel timeout (newer kernels); default: probed by the first init */
  timeoutUpdate?: boolean;
}

/** a set element as read back, with its parsed target */
export interface SetEntry {
  readonly target: IpTarget;
  readonly expiresMs: number | null;
}

interface Failure<T> {
  readonly item: T;
  readonly error: Error;
}

interface Caller {
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

type Job =
  | (Caller & { readonly kind: 'add'; readonly bans: readonly FirewallBan[] })
  | (Caller & { readonly kind: 'delete'; readonly targets: readonly IpTarget[] })
  | { readonly kind: 'task'; readonly run: () => Promise<void> };

const OVERLAP = /interval overlaps with an existing one/;

export class NftFirewall implements Firewall {
  private readonly script: NftScript;
  private readonly runner: NftRunner;
  private readonly log: Logger;
  private readonly queue: Job[] = [];
  private draining = false;
  private closed = false;
  /** unknown until the first init probes the kernel; until then bans are refreshed the way every kernel honours */
  private timeoutUpdate: boolean | undefined;

  constructor(options: NftFirewallOptions = {}) {
    this.script = new NftScript(options.table ?? 'ami_guard');
    this.runner = options.runner ?? new SpawnNftRunner({ nftPath: options.nftPath, netns: options.netns });
    this.log = (options.logger ?? createLogger('silent')).child({ component: 'firewall', table: this.script.table });
    this.timeoutUpdate = options.timeoutUpdate;
  }

  init(): Promise<void> {
    return this.task(async () => {
      try {
        await this.runner.apply(this.script.init());
      } catch (e) {
        throw this.explainInitError(e);
      }
      this.timeoutUpdate ??= await this.probeTimeoutUpdate();
      this.log.info({ timeoutUpdate: this.timeoutUpdate }, 'nft table ready');
    });
  }

  add(bans: readonly FirewallBan[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.assertOpen();
      assertBans(bans); // before queueing, so a bad ban never spoils the batch it would have joined
      this.push({ kind: 'add', bans: [...bans], resolve, reject });
    });
  }

  delete(targets: readonly IpTarget[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.assertOpen();
      targets.forEach(elementText);
      this.push({ kind: 'delete', targets: [...targets], resolve, reject });
    });
  }

  reconcile(bans: readonly FirewallBan[]): Promise<ReconcileResult> {
    return this.task(async () => {
      const { kept, covered } = dropCovered(bans);
      assertBans(covered);
      const script = this.script.replaceAll(kept); // validates kept before any nft process runs
      const before = new Set((await this.readAll()).map((e) => e.target.text));
      await this.runner.apply(script);
      const added = kept.filter((b) => !before.has(b.target.text)).length;
      const after = new Set(kept.map((b) => b.target.text));
      const removed = [...before].filter((t) => !after.has(t)).length;
      const result = { added, removed, total: kept.length };
      this.log.info({ ...result, covered: covered.length }, 'nft sets reconciled');
      return result;
    });
  }

  commit(): Promise<void> {
    return this.task(() => Promise.resolve());
  }

  async list(): Promise<FirewallElement[]> {
    const entries = await this.readAll();
    return entries.map((e) => ({ address: e.target.text, family: e.target.family, expiresMs: e.expiresMs }));
  }

  async present(): Promise<boolean> {
    let json: unknown;
    try {
      json = await this.runner.query(this.script.listTableCommand(), { terse: true });
    } catch (e) {
      if (e instanceof NftError && e.kind === 'script' && /No such file or directory/.test(e.stderr)) return false;
      throw e;
    }
    return layoutComplete(json);
  }

  async shutdown(): Promise<void> {
    this.closed = true;
    await this.task(() => Promise.resolve());
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('nft firewall is shut down');
  }

  private task<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.push({ kind: 'task', run: () => fn().then(resolve, reject) });
    });
  }

  private push(job: Job): void {
    this.queue.push(job);
    void this.drain();
  }

  /** Starts at once when idle; while a run is in flight, jobs wait and consecutive adds (or deletes) merge. */
  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    while (this.queue.length > 0) {
      const head = this.queue.shift()!;
      if (head.kind === 'task') {
        await head.run();
        continue;
      }
      const group = [head];
      while (this.queue[0]?.kind === head.kind) group.push(this.queue.shift() as typeof head);
      await this.runGroup(group);
    }
    this.draining = false;
  }

  private async runGroup(group: Exclude<Job, { kind: 'task' }>[]): Promise<void> {
    let failures: Failure<IpTarget>[];
    try {
      failures = group[0]!.kind === 'add'
        ? await this.applyBans(group.flatMap((j) => (j.kind === 'add' ? j.bans : [])))
        : await this.applyDeletes(group.flatMap((j) => (j.kind === 'delete' ? j.targets : [])));
    } catch (e) {
      // a bug below must not leave callers waiting forever
      for (const job of group) job.reject(e as Error);
      return;
    }
    const failed = new Map(failures.map((f) => [f.item.text, f.error]));
    for (const job of group) settle(job, failed);
  }

  private async applyBans(bans: readonly FirewallBan[]): Promise<Failure<IpTarget>[]> {
    const { kept, covered } = dropCovered(bans);
    for (const ban of covered) {
      this.log.debug({ address: ban.target.text }, 'already covered by a network in the same batch');
    }
    const failures = await this.isolate(
      kept,
      (part) => this.script.add(part, this.timeoutUpdate !== true),
      (ban, err) => this.resolveAddFailure(ban, err),
    );
    for (const f of failures) this.log.error({ address: f.item.target.text, err: f.error.message }, 'ban not applied');
    return failures.map((f) => ({ item: f.item.target, error: f.error }));
  }

  private async applyDeletes(targets: readonly IpTarget[]): Promise<Failure<IpTarget>[]> {
    const failures = await this.isolate(targets, (part) => this.script.delete(part), async (target, err) => {
      // the target overlaps a network or host in the set without being an element itself: nothing to delete
      if (!OVERLAP.test(err.stderr)) throw err;
      this.log.debug({ address: target.text }, 'not an element of the set, nothing to delete');
    });
    for (const f of failures) this.log.error({ address: f.item.text, err: f.error.message }, 'unban not applied');
    return failures;
  }

  /**
   * Applies items in one run; if nft refuses the script, halves the batch until each bad item stands alone and
   * hands it to `single`. A bad item costs O(log n) runs rather than n, which matters because every nft run
   * re-reads the whole interval set (about 1.5 s at 100k elements on nft 1.0.6).
   */
  private async isolate<T>(
    items: readonly T[],
    build: (items: readonly T[]) => string,
    single: (item: T, err: NftError) => Promise<void>,
  ): Promise<Failure<T>[]> {
    if (items.length === 0) return [];
    try {
      await this.runner.apply(build(items));
      return [];
    } catch (e) {
      // without a script error every item would fail alike (nft missing, no permission): no point splitting
      if (!(e instanceof NftError) || e.kind !== 'script') return items.map((item) => ({ item, error: e as Error }));
      if (items.length === 1) return this.trySingle(items[0]!, e, single);
      const mid = Math.ceil(items.length / 2);
      return [
        ...await this.isolate(items.slice(0, mid), build, single),
        ...await this.isolate(items.slice(mid), build, single),
      ];
    }
  }

  private async trySingle<T>(
    item: T,
    err: NftError,
    single: (item: T, err: NftError) => Promise<void>,
  ): Promise<Failure<T>[]> {
    try {
      await single(item, err);
      return [];
    } catch (e) {
      return [{ item, error: e as Error }];
    }
  }

  /**
   * An interval set refuses an element overlapping another. If a network in the set covers the ban, the address is
   * already dropped. If the ban is a network covering elements in the set, it replaces them: the network's timeout
   * then applies to them too (the store stays the source of truth and a reconcile restores longer bans). A second
   * attempt covers an element expiring between our read and our write.
   */
  private async resolveAddFailure(ban: FirewallBan, err: NftError): Promise<void> {
    if (!OVERLAP.test(err.stderr)) throw err;
    for (let attempt = 1; ; attempt++) {
      const entries = (await this.readAll()).filter((e) => e.target.family === ban.target.family);
      const cover = entries.find((e) => covers(e.target, ban.target));
      if (cover) {
        const context = { address: ban.target.text, coveredBy: cover.target.text };
        this.log.debug(context, 'already covered by a network in the set');
        return;
      }
      const inside = entries.filter((e) => covers(ban.target, e.target)).map((e) => e.target);
      try {
        await this.runner.apply(this.script.supersede(inside, ban));
        const context = { address: ban.target.text, replaces: inside.map((t) => t.text) };
        this.log.info(context, 'network ban replaces the elements it covers');
        return;
      } catch (e) {
        if (attempt >= 2) throw e;
      }
    }
  }

  /** one listing of the whole table: nft 1.0.6 reads every set of the table whatever is asked for */
  private async readAll(): Promise<SetEntry[]> {
    const json = await this.runner.query(this.script.listTableCommand());
    const entries: SetEntry[] = [];
    for (const family of [4, 6] as const) {
      const set = parseSetJson(json, family);
      entries.push(...set.entries);
      for (const raw of set.skipped) {
        this.log.warn({ element: raw, set: SET_NAMES[family] }, 'ignoring an element we did not write');
      }
    }
    return entries;
  }

  /** Never fails init: if the probe cannot tell, bans are refreshed the slow way that works on every kernel. */
  private async probeTimeoutUpdate(): Promise<boolean> {
    try {
      await this.runner.apply(this.script.probeTimeoutUpdate());
      return probedTimeout(await this.runner.query(this.script.probeCommand())) === 2000;
    } catch (e) {
      const message = 'timeout update probe failed; bans are refreshed by delete and re-add';
      this.log.warn({ err: (e as Error).message }, message);
      return false;
    } finally {
      await this.runner.apply(this.script.dropProbe()).catch(() => undefined);
    }
  }

  private explainInitError(e: unknown): unknown {
    if (e instanceof NftError && e.kind === 'script' && /File exists/.test(e.stderr)) {
      return new Error(`nft table inet ${this.script.table} exists with a different layout; remove it with ` +
        `'nft delete table inet ${this.script.table}' and restart (${e.message})`);
    }
    return e;
  }
}

function settle(job: Exclude<Job, { kind: 'task' }>, failed: ReadonlyMap<string, Error>): void {
  const targets = job.kind === 'add' ? job.bans.map((b) => b.target) : job.targets;
  const bad = targets.filter((t) => failed.has(t.text));
  if (bad.length === 0) {
    job.resolve();
    return;
  }
  const verb = job.kind === 'add' ? 'ban' : 'unban';
  const reason = failed.get(bad[0]!.text)!.message;
  job.reject(new Error(`nft could not ${verb} ${bad.map((t) => t.text).join(', ')}: ${reason}`));
}

/** Whether `outer` contains `inner` (an element covers itself). */
export function covers(outer: IpTarget, inner: IpTarget): boolean {
  if (outer.family !== inner.family) return false;
  if (outer.text === inner.text) return true;
  if (outer.kind !== 'prefix') return false;
  if (inner.kind === 'prefix') return inner.bits >= outer.bits && prefixContains(outer, inner.network);
  return prefixContains(outer, inner.text);
}

/**
 * Keeps the last ban per target and drops bans inside another ban's network, which an interval set would refuse as
 * overlapping; the network's own timeout applies to them. Indexed by prefix length so 100k bans stay linear.
 */
export function dropCovered(bans: readonly FirewallBan[]): { kept: FirewallBan[]; covered: FirewallBan[] } {
  const unique = new Map<string, FirewallBan>();
  for (const ban of bans) unique.set(ban.target.text, ban);
  const networks = new Map<string, Set<string>>(); // `${family}/${bits}` → network addresses
  for (const { target } of unique.values()) {
    if (target.kind !== 'prefix') continue;
    const key = `${target.family}/${target.bits}`;
    networks.set(key, (networks.get(key) ?? new Set()).add(target.network));
  }
  const kept: FirewallBan[] = [];
  const covered: FirewallBan[] = [];
  for (const ban of unique.values()) (insideAny(ban.target, networks) ? covered : kept).push(ban);
  return { kept, covered };
}

function insideAny(target: IpTarget, networks: ReadonlyMap<string, ReadonlySet<string>>): boolean {
  const ownBits = target.kind === 'prefix' ? target.bits : target.family === 4 ? 32 : 128;
  const base = target.kind === 'prefix' ? target.network : target.text;
  for (const [key, set] of networks) {
    const [family, bits] = key.split('/').map(Number) as [number, number];
    if (family !== target.family || bits >= ownBits) continue;
    const outer = parseTarget(`${base}/${bits}`);
    if (outer?.kind === 'prefix' && set.has(outer.network)) return true;
  }
  return false;
}

/**
 * Reads our family's set from `nft -j list table` output. Elements come as a bare address string,
 * `{prefix:{addr,len}}`, or either wrapped in `{elem:{val,timeout,expires}}` when they carry a timeout (whole seconds,
 * verified on nft 1.0.6). Anything else (a range someone added by hand) is returned in `skipped`.
 */
export function parseSetJson(json: unknown, family: IpFamily): { entries: SetEntry[]; skipped: unknown[] } {
  const set = nftItems<{ set?: { name?: unknown; elem?: unknown[] } }>(json).map((i) => i.set)
    .find((s) => s?.name === SET_NAMES[family]);
  const entries: SetEntry[] = [];
  const skipped: unknown[] = [];
  for (const raw of set?.elem ?? []) {
    const entry = parseElement(raw);
    if (entry && entry.target.family === family) entries.push(entry);
    else skipped.push(raw);
  }
  return { entries, skipped };
}

function parseElement(raw: unknown): SetEntry | null {
  if (typeof raw === 'string') return targetEntry(raw, null);
  if (typeof raw !== 'object' || raw === null) return null;
  if ('prefix' in raw) {
    const { addr, len } = (raw as { prefix: { addr?: unknown; len?: unknown } }).prefix;
    return typeof addr === 'string' && typeof len === 'number' ? targetEntry(`${addr}/${len}`, null) : null;
  }
  if ('elem' in raw) {
    const { val, expires } = (raw as { elem: { val?: unknown; expires?: unknown } }).elem;
    const inner = parseElement(val);
    return inner && { target: inner.target, expiresMs: typeof expires === 'number' ? expires * 1000 : null };
  }
  return null;
}

function targetEntry(text: string, expiresMs: number | null): SetEntry | null {
  const target = parseTarget(text);
  return target && { target, expiresMs };
}

function nftItems<T>(json: unknown): T[] {
  return ((json as { nftables?: unknown[] } | null)?.nftables ?? []) as T[];
}

function probedTimeout(json: unknown): unknown {
  const items = nftItems<{ set?: { elem?: { elem?: { timeout?: unknown } }[] } }>(json);
  return items.find((i) => i.set)?.set?.elem?.[0]?.elem?.timeout;
}

/** Our table with both sets and a prerouting chain whose rules drop from each set (terse `list table` JSON). */
function layoutComplete(json: unknown): boolean {
  const items = nftItems<Record<string, Record<string, unknown>>>(json);
  const sets = new Set(items.map((i) => i['set']?.['name']));
  const chain = items.find((i) => i['chain']?.['name'] === CHAIN_NAME)?.['chain'];
  const rules = items.map((i) => i['rule']).filter((r) => r?.['chain'] === CHAIN_NAME)
    .map((r) => JSON.stringify(r?.['expr']));
  const drops = (set: string) => rules.some((r) => r.includes(`"@${set}"`) && r.includes('"drop"'));
  return sets.has(SET_NAMES[4]) && sets.has(SET_NAMES[6]) && chain?.['hook'] === 'prerouting'
    && drops(SET_NAMES[4]) && drops(SET_NAMES[6]);
}
