// The nftables backend: one `inet` table of our own with, per family, a hash set for host bans and an interval set
// for network bans, and a raw-priority drop chain. Every element carries its remaining ban time as a kernel timeout,
// so bans lapse on schedule even while we are down. Writes go through an ordered queue to one runner (for the daemon
// the persistent writer, nft-writer.ts); adds that pile up behind a running transaction are sent together as the
// next one. What the sets hold is known from our own writes (kernel-bans.ts), so neither a reconciliation nor the
// watchdog lists the sets, which costs over half a second at 100k elements.
import { createLogger, type Logger } from '../log.js';
import { contains, parseTarget, unbannableReason, type IpFamily, type IpPrefix, type IpTarget } from '../net/ip.js';
import type { ActiveBanCount } from '../metrics.js';
import type { Firewall, FirewallBan, FirewallElement, ReconcileResult } from './firewall.js';
import { KernelBans } from './kernel-bans.js';
import { TargetMap } from '../net/target-map.js';
import { parseSetListing, type SetEntry } from './nft-listing.js';
import { NftError, SpawnNftRunner, type NftRunner } from './nft-runner.js';
import { NftWriter } from './nft-writer.js';
import { assertBans, CHAIN_NAME, CHAIN_PRIORITY, elementText, netSet, NftScript, SETS, type SetSpec } from './nft-script.js';
import { hostLoadBatch } from './netlink-batch.js';
import { diffSets, type KernelPicture, type SetChanges } from './set-diff.js';
import { NO_END, readHostSetDump, type HostSetDump } from './set-dump.js';

export type { SetEntry } from './nft-listing.js';

export interface NftFirewallOptions {
  /** default 'ami_guard' */
  table?: string;
  /** default 'nft'; the spawning runner's binary */
  nftPath?: string;
  /** a name under /run/netns or an absolute namespace path; default: our own namespace */
  netns?: string;
  logger?: Logger;
  /**
   * one long-lived writer child (the daemon) rather than a process per call (the CLI's one-shot verbs); default
   * false
   */
  persistent?: boolean;
  /** counts each restart of the persistent writer */
  onWriterRestart?: () => void;
  /** replaces the runner (nftPath, netns and persistent are then unused) */
  runner?: NftRunner;
  /** whether re-adding an element replaces its kernel timeout (newer kernels); default: probed by the first init */
  timeoutUpdate?: boolean;
  now?: () => number;
}

/** a network ban left out because a wider network banned with it stands for it */
export interface FoldedBan {
  readonly ban: FirewallBan;
  /** the text of the wider network */
  readonly into: string;
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
const ABSENT = /No such file or directory/;
/** elements we did not write named in the log per set, at most */
const SKIPPED_SHOWN = 10;

/** The sets as a restart's first reconciliation reads them (readPicture), and whether that reading can be trusted. */
interface ReadPicture extends KernelPicture {
  /** the ruleset generation before the reading */
  readonly generation: number;
  /** no transaction was committed while the sets were read */
  readonly stable: boolean;
  /** elements that are no target of their set (left to a flush) */
  readonly skipped: number;
}

/** a runner that reads sets and the generation by netlink itself (the persistent writer) */
type DumpingRunner = NftRunner & Required<Pick<NftRunner, 'dumpSet' | 'generation'>>;

function dumps(runner: NftRunner): runner is DumpingRunner {
  return typeof runner.dumpSet === 'function' && typeof runner.generation === 'function';
}
/** bans per transaction when loading sets known to be empty */
const LOAD_SLICE = 10_000;

export class NftFirewall implements Firewall {
  private readonly script: NftScript;
  private readonly runner: NftRunner;
  private readonly log: Logger;
  private readonly queue: Job[] = [];
  private readonly now: () => number;
  private readonly kernel: KernelBans;
  private draining = false;
  private closed = false;
  /** unknown until the first init probes the kernel; until then bans are refreshed the way every kernel honours */
  private timeoutUpdate: boolean | undefined;
  /**
   * The listing of a table we found already there, started by init() so that the writer child reads the sets while
   * the daemon reads the store; the first reconciliation takes it.
   */
  private listing: Promise<SetEntry[]> | undefined;
  /** the same with each element's end, read by netlink, when the runner can (see readPicture) */
  private picture: Promise<ReadPicture> | undefined;
  /** init() has just created our table: until the next reconciliation, its sets hold only what we add */
  private fresh = false;
  /** host bans written ahead of the reconciliation into fresh sets (preload), and their transactions */
  private preloaded: { readonly bans: Set<FirewallBan>; readonly sent: Array<Promise<void>> } | undefined;

  constructor(options: NftFirewallOptions = {}) {
    this.script = new NftScript(options.table ?? 'ami_guard');
    this.log = (options.logger ?? createLogger('silent')).child({ component: 'firewall', table: this.script.table });
    this.runner =
      options.runner ??
      (options.persistent
        ? new NftWriter({ netns: options.netns, logger: this.log, onRestart: options.onWriterRestart })
        : new SpawnNftRunner({ nftPath: options.nftPath, netns: options.netns }));
    this.timeoutUpdate = options.timeoutUpdate;
    this.now = options.now ?? Date.now;
    this.kernel = new KernelBans(this.now);
  }

  init(): Promise<void> {
    return this.task(async () => {
      const { stale, missing } = inspectLayout(await this.queryLayout(), this.script.table);
      if (stale.length > 0) {
        await this.migrate(stale);
      } else {
        try {
          await this.runner.apply(this.script.init());
        } catch (e) {
          throw this.explainInitError(e);
        }
        // a table we have just created holds nothing, so what the sets hold is known without listing them
        if (missing.includes(`table inet ${this.script.table}`)) {
          this.kernel.replace([], this.now());
          this.fresh = true;
        }
      }
      this.timeoutUpdate ??= await this.probeTimeoutUpdate();
      if (!this.kernel.complete && this.listing === undefined && this.picture === undefined) {
        // the reconciliation that takes it reports a failure
        const runner = this.runner;
        if (dumps(runner)) (this.picture = this.readPicture(runner)).catch(() => undefined);
        else (this.listing = this.readAll(true)).catch(() => undefined);
      }
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

  /**
   * One transaction flushes the sets and loads the bans (the sets of a table init() has just created are loaded in
   * slices instead: see load). What it removed comes from what we know the sets held (KernelBans). The first
   * reconciliation after a start that found our table already there reads the sets instead, which init() has started:
   * through the persistent writer by netlink, with each element's end, so that one small transaction changes only what
   * differs (reconcileByDiff); through spawned nft as addresses only (`nft -s`), to learn what it removed.
   */
  reconcile(bans: readonly FirewallBan[], at: number = this.now()): Promise<ReconcileResult> {
    return this.task(async () => {
      // bans from the store are one per target, and without networks there is nothing to fold: no pass over 100k
      const { kept, folded } = bans.some((b) => b.target.kind === 'prefix') ? foldNetworks(bans) : { kept: bans, folded: [] };
      assertBans(folded.map((f) => f.ban));
      const listing = this.listing;
      const picture = this.picture;
      this.listing = undefined;
      this.picture = undefined;
      const fresh = this.fresh;
      this.fresh = false;
      const preloaded = this.preloaded;
      this.preloaded = undefined;
      if (fresh && this.kernel.size === 0) return this.loadFresh(kept, folded.length, preloaded);
      // a write since init() (or a failed reconciliation) makes this a flush and load, which the preload came before
      if (preloaded) await Promise.allSettled(preloaded.sent);
      // A restart's first reconciliation takes the picture init() started; a periodic one reads the sets here, in the
      // queue, so nothing of ours writes meanwhile. Either way only what differs is written: at 100k bans a ban queued
      // behind a periodic one waits 0.44–0.47 s, where a flush and load through libnftables held it 0.59–0.73 s (up to
      // 2 s on a busy machine) every fleet.reconcileInterval.
      const runner = this.runner;
      const readHere = picture === undefined && this.kernel.complete && dumps(runner);
      const reading = readHere ? this.readPicture(runner) : picture;
      if (reading !== undefined) {
        const read = await reading.catch((e: unknown) => {
          this.log.warn({ err: (e as Error).message }, 'could not read the nft sets by netlink; reconciling without that reading');
          return undefined;
        });
        if (read !== undefined) return this.reconcileByDiff(kept, folded.length, at, read, readHere);
      }
      const script = this.script.replaceAll(kept); // validates kept before any nft runs
      const listed = this.kernel.complete ? undefined : await (listing ?? this.readAll(true));
      await this.runner.apply(script);
      return this.reconciled(kept, folded.length, listed);
    });
  }

  /**
   * Bans the reconciliation will be given, as the daemon reads them from the store: into the sets of a table init()
   * has just created they go at once, hosts only (networks are folded at the reconciliation), one transaction per
   * call, so the writer loads them while the rest is read. The reconciliation loads what was not preloaded and
   * deletes what was but is not among its bans.
   */
  preload(bans: readonly FirewallBan[]): void {
    if (!this.fresh || this.kernel.size > 0 || this.closed) return;
    const hosts = bans.filter((b) => b.target.kind === 'address');
    if (hosts.length === 0) return;
    this.preloaded ??= { bans: new Set(), sent: [] };
    for (const b of hosts) this.preloaded.bans.add(b);
    let sent: Promise<void>;
    try {
      sent = this.loadHosts(hosts); // validates each ban first
    } catch (e) {
      sent = Promise.reject(e as Error);
    }
    sent.catch(() => undefined); // the reconciliation reports it
    this.preloaded.sent.push(sent);
  }

  /**
   * A reconciliation into the sets of a table init() has just created: what was preloaded is there once its
   * transactions are; the rest is loaded in slices, and a preloaded ban that is not among `kept` (the store read
   * again after a loss, a feed's longer timeout for the same target) is deleted or written again.
   */
  private async loadFresh(
    kept: readonly FirewallBan[],
    folded: number,
    preloaded: { readonly bans: Set<FirewallBan>; readonly sent: Array<Promise<void>> } | undefined,
  ): Promise<ReconcileResult> {
    if (!preloaded) {
      await this.load(kept, false);
      return this.reconciled(kept, folded, undefined);
    }
    await Promise.all(preloaded.sent);
    const rest: FirewallBan[] = [];
    let inKept = 0;
    for (const b of kept) {
      if (preloaded.bans.has(b)) inKept++;
      else rest.push(b);
    }
    let stale: SetEntry[] | undefined;
    if (inKept < preloaded.bans.size) {
      const keptTargets = new TargetMap();
      for (const b of kept) keptTargets.set(b.target, 0);
      const gone = new Map<string, IpTarget>();
      for (const b of preloaded.bans) if (!keptTargets.has(b.target)) gone.set(b.target.text, b.target);
      stale = [...gone.values()].map((target) => ({ target, expiresMs: null }));
      if (stale.length > 0) await this.runner.apply(this.script.delete(stale.map((e) => e.target)));
    }
    // a target of `rest` may be there already, preloaded with another timeout
    await this.load(rest, inKept < preloaded.bans.size && this.timeoutUpdate !== true);
    return this.reconciled(kept, folded, stale);
  }

  /**
   * Into the sets of a table we have just created (a first start, or one someone deleted) no flush is
   * needed and nothing has to be replaced at once, so the bans go in slices, each its own transaction: the writer
   * child parses one while this thread writes the next, instead of one after the other. Should a slice be refused,
   * the reconciliation fails with the slices before it in place: bans the store holds, in sets that held none.
   */
  private async load(bans: readonly FirewallBan[], replaceTimeouts: boolean): Promise<void> {
    const sent: Promise<void>[] = [];
    // hosts by netlink batch where the runner takes one (nothing to replace): networks as a script of their own
    const batched = !replaceTimeouts && typeof this.runner.applyBatch === 'function';
    const hosts = batched ? bans.filter((b) => b.target.kind === 'address') : bans;
    const nets = batched ? bans.filter((b) => b.target.kind === 'prefix') : [];
    try {
      for (let i = 0; i < hosts.length; i += LOAD_SLICE) {
        const slice = hosts.slice(i, i + LOAD_SLICE);
        sent.push(batched ? this.loadHosts(slice) : this.runner.apply(this.script.add(slice, replaceTimeouts)));
        // let the slice reach the writer before building the next one
        await new Promise((r) => setImmediate(r));
      }
      if (nets.length > 0) sent.push(this.runner.apply(this.script.add(nets, false)));
    } finally {
      await Promise.allSettled(sent);
    }
    await Promise.all(sent);
  }

  /**
   * A restart into sets a previous run filled, or any later reconciliation: one transaction deletes what the store
   * does not hold, adds what is missing and adds again the elements whose end is off (set-diff.ts), where a flush and
   * load would rewrite all 100k.
   * Exact only if nobody else committed between the reading and this transaction: the generation says so, and if it
   * moved by more than our own commit (or moved while the sets were read, or they held elements we cannot read), the
   * sets are flushed and loaded in one transaction as on any other reconciliation. `readHere`: the picture was read
   * inside this reconciliation's task (a periodic one), not at init() with writes of ours since.
   */
  private async reconcileByDiff(
    kept: readonly FirewallBan[],
    folded: number,
    at: number,
    picture: ReadPicture,
    readHere: boolean,
  ): Promise<ReconcileResult> {
    assertBans(kept); // as replaceAll would: a ban that could not be written fails the reconciliation before nft runs
    const runner = this.runner as DumpingRunner;
    // any write of ours since a reading at init() (a reconciliation that failed, a start on the kernel's bans) moved
    // the generation; one read here, in the queue, has none after it
    let whole = !picture.stable || picture.skipped > 0 || (!readHere && this.kernel.size > 0);
    const changes = diffSets(picture, kept, at);
    if (!whole) {
      const script = this.script.update(changes);
      if (script.length > 0) await runner.apply(script);
      const expected = (picture.generation + (script.length > 0 ? 1 : 0)) >>> 0;
      whole = (await runner.generation()) !== expected;
    }
    if (whole) {
      this.log.info(
        { changedMeanwhile: !picture.stable, skipped: picture.skipped },
        'nft sets changed while being read, or hold elements we did not write: replacing them whole',
      );
      await runner.apply(this.script.replaceAll(kept));
    }
    return this.settled(kept, folded, changes, whole);
  }

  /** Records what the sets hold after a reconciliation by difference, and reports what it changed. */
  private settled(kept: readonly FirewallBan[], folded: number, changes: SetChanges, whole: boolean): ReconcileResult {
    this.kernel.replace(kept, this.now());
    const total = this.kernel.size;
    const result = { added: changes.added, removed: changes.removed.length, total, removedTargets: changes.removed };
    this.log.info(
      {
        added: result.added,
        removed: result.removed,
        refreshed: whole ? undefined : changes.refresh.length,
        total,
        folded,
        listed: true,
        whole,
      },
      'nft sets reconciled',
    );
    return result;
  }

  /**
   * Host bans into sets known not to hold them, as one transaction: a netlink batch of our own encoding when the
   * runner takes one (the writer: ~0.2 s of kernel work at 100k, where libnftables spends ~0.4 s more parsing script
   * text), else a script. Throws before anything is sent if a ban could not be written.
   */
  private loadHosts(bans: readonly FirewallBan[]): Promise<void> {
    if (typeof this.runner.applyBatch === 'function') return this.runner.applyBatch(hostLoadBatch(this.script.table, bans));
    return this.runner.apply(this.script.add(bans, false));
  }

  /** Records what the sets now hold, and counts what changed against what they held (known, and listed if so). */
  private reconciled(kept: readonly FirewallBan[], folded: number, listed: SetEntry[] | undefined): ReconcileResult {
    const now = this.now();
    const before = this.kernel.replace(kept, now);
    for (const e of listed ?? []) before.set(e.target, e.expiresMs === null ? Number.MAX_SAFE_INTEGER : now + e.expiresMs);
    const removedTargets: IpTarget[] = [];
    for (const [target] of before.entries()) if (!this.kernel.has(target)) removedTargets.push(target);
    // every target before and still there is one not added
    const total = this.kernel.size;
    const added = total - (before.size - removedTargets.length);
    const result = { added, removed: removedTargets.length, total, removedTargets };
    this.log.info({ added, removed: result.removed, total, folded, listed: listed !== undefined }, 'nft sets reconciled');
    return result;
  }

  commit(): Promise<void> {
    return this.task(() => Promise.resolve());
  }

  async list(): Promise<FirewallElement[]> {
    const entries = await this.readAll(false);
    return entries.map((e) => ({ address: e.target.text, target: e.target, family: e.target.family, expiresMs: e.expiresMs }));
  }

  async present(): Promise<boolean> {
    return inspectLayout(await this.queryLayout(), this.script.table).complete;
  }

  /** What is missing or misshapen in our table, in words such as `set banned_v4`; empty when it is complete. */
  async gaps(): Promise<string[]> {
    const { stale, missing } = inspectLayout(await this.queryLayout(), this.script.table);
    return [...missing, ...stale];
  }

  /**
   * The sets lacking one of these targets. Queued behind the writes already asked for, so a target added or deleted
   * before the call is looked up after that write. One small transaction per target, which changes nothing.
   */
  missingFrom(targets: readonly IpTarget[]): Promise<string[]> {
    return this.task(async () => {
      const sets = new Set<string>();
      for (const t of targets) if (!(await this.lookUp(t))) sets.add(this.script.setName(t));
      return [...sets];
    });
  }

  /** Bans in force in our sets per family, as written by this process (the active-bans gauge). */
  activeBans(): ActiveBanCount {
    return this.kernel.count();
  }

  /** A few bans written here with at least `marginMs` left: one per set, the same ones until they end or go. */
  inForce(marginMs: number): IpTarget[] {
    return this.kernel.oldest(marginMs);
  }

  private async lookUp(target: IpTarget): Promise<boolean> {
    try {
      await this.runner.apply(this.script.probe(target));
      return false; // created (and deleted again): it was not there
    } catch (e) {
      if (e instanceof NftError && e.kind === 'script' && (/File exists/.test(e.stderr) || OVERLAP.test(e.stderr))) return true;
      throw e;
    }
  }

  /** Applies what is queued, then ends the runner's child; the table and its elements stay in the kernel. */
  async shutdown(): Promise<void> {
    this.closed = true;
    await this.task(() => Promise.resolve());
    await this.runner.close();
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
      failures =
        group[0]!.kind === 'add'
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
    // hosts only (nearly every batch): nothing to fold, only repeats to drop (the last ask of a target wins)
    const { kept, folded } = bans.some((b) => b.target.kind === 'prefix') ? foldNetworks(bans) : { kept: lastOfEach(bans), folded: [] };
    for (const { ban, into } of folded) {
      this.log.debug({ address: ban.target.text, into }, 'inside a network of its batch');
    }
    const failures = (
      await this.sliced(kept, (slice) =>
        this.isolate(
          slice,
          (part) => this.sendBans(part),
          (ban, err) => this.resolveOverlap(ban, err),
        ),
      )
    ).map((f) => ({ item: f.item.target, error: f.error }));
    // a folded network is applied exactly when the network standing for it is
    const failed = new Map(failures.map((f) => [f.item.text, f.error]));
    for (const f of folded) {
      const error = failed.get(f.into);
      if (error) failures.push({ item: f.ban.target, error });
    }
    for (const f of failures) this.log.error({ address: f.item.text, err: f.error.message }, 'ban not applied');
    const appliedAt = this.now();
    for (const b of kept) if (!failed.has(b.target.text)) this.kernel.set(b.target, appliedAt + b.timeoutMs);
    return failures;
  }

  private async applyDeletes(targets: readonly IpTarget[]): Promise<Failure<IpTarget>[]> {
    const failures = await this.isolate(
      targets,
      (part) => this.runner.apply(this.script.delete(part)),
      async (target, err) => {
        // a network overlapping one in the set without being an element itself: nothing to delete
        if (target.kind !== 'prefix' || !OVERLAP.test(err.stderr)) throw err;
        this.log.debug({ address: target.text }, 'not an element of the set, nothing to delete');
      },
    );
    for (const f of failures) this.log.error({ address: f.item.text, err: f.error.message }, 'unban not applied');
    const failed = new Set(failures.map((f) => f.item.text));
    for (const t of targets) if (!failed.has(t.text)) this.kernel.delete(t);
    return failures;
  }

  /**
   * A large batch (a blocklist's pull) in slices of LOAD_SLICE, each its own transaction, sent one behind the other
   * so the writer child parses one while this thread builds the next; a batch of bans as the daemon makes them is
   * one slice, one transaction.
   */
  private async sliced<T, F>(items: readonly T[], apply: (slice: readonly T[]) => Promise<F[]>): Promise<F[]> {
    if (items.length <= LOAD_SLICE) return apply(items);
    const sent: Promise<F[]>[] = [];
    for (let i = 0; i < items.length; i += LOAD_SLICE) {
      sent.push(apply(items.slice(i, i + LOAD_SLICE)));
      await new Promise((r) => setImmediate(r));
    }
    return (await Promise.all(sent)).flat();
  }

  /**
   * Applies items in one run; if nft refuses the script, halves the batch until each bad item stands alone and
   * hands it to `single`. A bad item costs O(log n) runs rather than n: a run costs little with hash sets (~10 ms),
   * but a batch of thousands would otherwise mean thousands of runs.
   */
  private async isolate<T>(
    items: readonly T[],
    send: (items: readonly T[]) => Promise<void>,
    single: (item: T, err: NftError) => Promise<void>,
  ): Promise<Failure<T>[]> {
    if (items.length === 0) return [];
    try {
      await send(items);
      return [];
    } catch (e) {
      // without a script error every item would fail alike (nft missing, no permission): no point splitting
      if (!(e instanceof NftError) || e.kind !== 'script') return items.map((item) => ({ item, error: e as Error }));
      if (items.length === 1) return this.trySingle(items[0]!, e, single);
      const mid = Math.ceil(items.length / 2);
      return [...(await this.isolate(items.slice(0, mid), send, single)), ...(await this.isolate(items.slice(mid), send, single))];
    }
  }

  /**
   * Bans as one transaction. Host bans on a kernel that replaces a present element's timeout on re-adding it go as a
   * netlink batch of our own encoding, as a fresh load does: libnftables would first check its cache against the
   * kernel and parse the script, ~0.3 ms of a ban's ~1.3 ms on this path. Networks (interval sets, where nft folds
   * and checks overlaps) and older kernels (add, delete and add again) keep the script.
   */
  private sendBans(bans: readonly FirewallBan[]): Promise<void> {
    if (this.timeoutUpdate === true && typeof this.runner.applyBatch === 'function' && bans.every((b) => b.target.kind === 'address')) {
      return this.runner.applyBatch(hostLoadBatch(this.script.table, bans));
    }
    return this.runner.apply(this.script.add(bans, this.timeoutUpdate !== true));
  }

  private async trySingle<T>(item: T, err: NftError, single: (item: T, err: NftError) => Promise<void>): Promise<Failure<T>[]> {
    try {
      await single(item, err);
      return [];
    } catch (e) {
      return [{ item, error: e as Error }];
    }
  }

  /**
   * An interval set refuses a network overlapping another, so nested networks fold into the widest, which keeps the
   * longest timeout among them: no address is released before every ban covering it has ended, at the price of
   * holding the rest of the wider network as long. Operators rarely nest network bans, and the store stays the truth.
   * A second attempt covers an element expiring between our read and our write.
   */
  private async resolveOverlap(ban: FirewallBan, err: NftError): Promise<void> {
    if (ban.target.kind !== 'prefix' || !OVERLAP.test(err.stderr)) throw err;
    const network = ban.target;
    for (let attempt = 1; ; attempt++) {
      try {
        const entries = await this.readSet(netSet(network.family));
        const cover = entries.find((e) => covers(e.target, network));
        if (cover) {
          if (cover.expiresMs !== null && cover.expiresMs < ban.timeoutMs) {
            const longer = { target: cover.target, timeoutMs: ban.timeoutMs };
            await this.runner.apply(this.script.add([longer], this.timeoutUpdate !== true));
          }
          this.log.debug({ address: network.text, coveredBy: cover.target.text }, 'inside a network already banned');
          return;
        }
        const inside = entries.filter((e) => covers(network, e.target));
        const timeoutMs = Math.max(ban.timeoutMs, ...inside.map((e) => e.expiresMs ?? 0));
        await this.runner.apply(
          this.script.supersede(
            inside.map((e) => e.target),
            { target: network, timeoutMs },
          ),
        );
        const replaces = inside.map((e) => e.target.text);
        this.log.info({ address: network.text, replaces }, 'network ban replaces the networks it covers');
        return;
      } catch (e) {
        if (attempt >= 2) throw e;
      }
    }
  }

  /**
   * Every set's elements, one text listing per set: ~0.7 s at 100k hosts on nft 1.0.6 and kernel 6.18 (JSON: ~2 s),
   * much of it in the kernel, whose hash set dump walks past every element already sent for each netlink message.
   * Addresses only (`stateless`): ~0.5 s.
   */
  private async readAll(stateless: boolean): Promise<SetEntry[]> {
    const all: SetEntry[] = [];
    for (const set of SETS) all.push(...(await this.readSet(set, stateless)));
    return all;
  }

  /** one set only: far cheaper than the table when it is a network set beside 100k hosts */
  private async readSet(set: SetSpec, stateless = false): Promise<SetEntry[]> {
    return (await this.readSetCounting(set, stateless)).entries;
  }

  private async readSetCounting(set: SetSpec, stateless: boolean): Promise<{ entries: SetEntry[]; skipped: number }> {
    let text: string;
    try {
      text = await this.runner.list(this.script.listSetCommand(set), { stateless });
    } catch (e) {
      // a set that is not there holds nothing (a table of an older layout, a set someone deleted)
      if (absent(e)) return { entries: [], skipped: 0 };
      throw e;
    }
    const { entries, skipped } = parseSetListing(text, set);
    for (const raw of skipped) this.log.warn({ element: raw, set: set.name }, 'ignoring an element we did not write');
    return { entries, skipped: skipped.length };
  }

  /**
   * The sets with each element's end, for a restart's first reconciliation: the host sets by the writer's netlink dump
   * (~0.2 s at 100k, where nft's listing takes 0.6–1.3 s, and with timeouts, which that listing would cost more for),
   * the network sets, few, by nft's listing. The generation before and after tells whether anyone committed meanwhile.
   */
  private async readPicture(runner: DumpingRunner): Promise<ReadPicture> {
    const generation = await runner.generation();
    let stable = true;
    let skipped = 0;
    const hosts = async (set: SetSpec): Promise<HostSetDump | undefined> => {
      let raw: Buffer;
      try {
        raw = await runner.dumpSet(this.script.table, set.name);
      } catch (e) {
        if (absent(e)) return undefined;
        throw e;
      }
      const dump = readHostSetDump(raw, set.family);
      if (dump.generation !== undefined && dump.generation !== (generation & 0xffff)) stable = false;
      if (dump.skipped.length > 0) {
        skipped += dump.skipped.length;
        this.log.warn(
          { set: set.name, skipped: dump.skipped.length, elements: dump.skipped.slice(0, SKIPPED_SHOWN) },
          'ignoring elements we did not write',
        );
      }
      return dump;
    };
    const v4 = await hosts(SETS.find((s) => s.name === 'banned_v4')!);
    const v6 = await hosts(SETS.find((s) => s.name === 'banned_v6')!);
    const nets = new Map<IpFamily, Array<{ target: IpTarget; end: number }>>();
    for (const family of [4, 6] as const) {
      const readAt = this.now(); // before the listing: an end from it is never later than the kernel's
      const listed = await this.readSetCounting(netSet(family), false);
      skipped += listed.skipped;
      nets.set(
        family,
        listed.entries.map((e) => ({ target: e.target, end: e.expiresMs === null ? NO_END : readAt + e.expiresMs })),
      );
    }
    if ((await runner.generation()) !== generation) stable = false;
    return { v4: v4?.v4 ?? new Map(), v6: v6?.v6 ?? new Map(), nets, generation, stable, skipped };
  }

  private async queryLayout(): Promise<unknown> {
    return JSON.parse(await this.runner.list(this.script.layoutCommand(), { json: true, terse: true })) as unknown;
  }

  /**
   * Recreates a table whose sets or chain are shaped otherwise (the first layout kept hosts in interval sets, which
   * cannot be altered in place), with every element it held and its remaining time, in one transaction: either the
   * new table replaces the old one or nothing changes.
   */
  private async migrate(stale: readonly string[]): Promise<void> {
    const bans: FirewallBan[] = [];
    for (const { target, expiresMs } of await this.readAll(false)) {
      const reason = unbannableReason(target);
      if (reason) {
        this.log.warn({ element: target.text, reason }, 'not carrying over an element we would refuse to ban');
        continue;
      }
      // nft prints the time left to the ms, and the new timeout is rounded up to whole seconds, so no ban ends early.
      // An element without a timeout was added by hand to stay: it gets the longest timeout nft takes.
      bans.push({ target, timeoutMs: expiresMs === null ? Infinity : expiresMs });
    }
    const { kept } = foldNetworks(bans);
    const t = `inet ${this.script.table}`;
    try {
      await this.runner.apply(this.script.rebuild(kept));
    } catch (e) {
      throw new Error(
        `nft table ${t} has an older layout (${stale.join(', ')}) and could not be recreated; ` +
          `remove it with 'nft delete table ${t}' and restart (${(e as Error).message})`,
      );
    }
    this.kernel.replace(kept, this.now());
    this.log.warn({ stale, elements: kept.length }, 'nft table recreated with the current layout, elements kept');
  }

  /** Never fails init: if the probe cannot tell, bans are refreshed the slow way that works on every kernel. */
  private async probeTimeoutUpdate(): Promise<boolean> {
    try {
      await this.runner.apply(this.script.probeSetup());
      await this.runner.apply(this.script.probeReAdd());
      const listed = await this.runner.list(this.script.probeCommand(), { json: true });
      return probedTimeout(JSON.parse(listed) as unknown) === 2000;
    } catch (e) {
      const message = 'timeout update probe failed; bans are refreshed by delete and re-add';
      this.log.warn({ err: (e as Error).message }, message);
      return false;
    } finally {
      await this.runner.apply(this.script.dropProbe()).catch(() => undefined);
    }
  }

  /** for a clash the layout check did not foresee, e.g. a table changed between the check and the init */
  private explainInitError(e: unknown): unknown {
    if (e instanceof NftError && e.kind === 'script' && /File exists|Operation not supported/.test(e.stderr)) {
      return new Error(
        `nft table inet ${this.script.table} exists with a different layout; remove it with ` +
          `'nft delete table inet ${this.script.table}' and restart (${e.message})`,
      );
    }
    return e;
  }
}

/** nft's answer for a set (or table) that is not there */
function absent(e: unknown): boolean {
  return e instanceof NftError && e.kind === 'script' && ABSENT.test(e.stderr);
}

function settle(job: Exclude<Job, { kind: 'task' }>, failed: ReadonlyMap<string, Error>): void {
  const targets = job.kind === 'add' ? job.bans.map((b) => b.target) : job.targets;
  const bad = targets.filter((t) => failed.has(t.text));
  if (bad.length === 0) {
    job.resolve();
    return;
  }
  const verb = job.kind === 'add' ? 'ban' : 'unban';
  const cause = failed.get(bad[0]!.text)!;
  job.reject(new Error(`nft could not ${verb} ${bad.map((t) => t.text).join(', ')}: ${cause.message}`, { cause }));
}

/** The bans with each target once, its last ask kept; the same array when no target repeats (the usual case). */
function lastOfEach(bans: readonly FirewallBan[]): readonly FirewallBan[] {
  const seen = new Set<string>();
  for (const b of bans) seen.add(b.target.text);
  if (seen.size === bans.length) return bans;
  const last = new Map<string, FirewallBan>();
  for (const b of bans) last.set(b.target.text, b);
  return [...last.values()];
}

/** Whether `outer` contains `inner` (an element covers itself). */
export function covers(outer: IpTarget, inner: IpTarget): boolean {
  return contains(outer, inner);
}

/**
 * Keeps the last ban per target and folds each network inside another of the batch into the widest one, which an
 * interval set needs (it refuses overlapping elements): that network keeps the longest timeout of those folded into
 * it (see resolveOverlap). Hosts are never folded: they live in the hash sets, and a host inside a banned network is
 * an element of its own. Networks are indexed by prefix length so 100k bans stay linear.
 */
export function foldNetworks(bans: readonly FirewallBan[]): { kept: FirewallBan[]; folded: FoldedBan[] } {
  const unique = new Map<string, FirewallBan>();
  let networks = 0;
  for (const ban of bans) {
    unique.set(ban.target.text, ban);
    if (ban.target.kind === 'prefix') networks++;
  }
  // the common case (a reconciliation of 100k host bans): nothing to fold
  if (networks === 0) return { kept: [...unique.values()], folded: [] };
  const lengths: PrefixLength[] = [];
  for (const { target } of unique.values()) {
    if (target.kind !== 'prefix') continue;
    let slot = lengths.find((l) => l.family === target.family && l.bits === target.bits);
    if (!slot) lengths.push((slot = { family: target.family, bits: target.bits, networks: new Set() }));
    slot.networks.add(target.network);
  }
  lengths.sort((a, b) => a.bits - b.bits);
  const folded: FoldedBan[] = [];
  const longest = new Map<string, number>();
  for (const ban of unique.values()) {
    if (ban.target.kind !== 'prefix') continue;
    const into = widestCover(ban.target, lengths);
    if (into === undefined) continue;
    folded.push({ ban, into });
    longest.set(into, Math.max(longest.get(into) ?? ban.timeoutMs, ban.timeoutMs));
  }
  const gone = new Set(folded.map((f) => f.ban.target.text));
  const kept = [...unique.values()]
    .filter((b) => !gone.has(b.target.text))
    .map((b) => {
      const timeoutMs = longest.get(b.target.text);
      return timeoutMs !== undefined && timeoutMs > b.timeoutMs ? { ...b, timeoutMs } : b;
    });
  return { kept, folded };
}

/** the networks of a batch with one family and prefix length */
interface PrefixLength {
  readonly family: IpFamily;
  readonly bits: number;
  readonly networks: Set<string>;
}

/** the widest network of the batch strictly containing `inner`, by its text; `lengths` sorted widest first */
function widestCover(inner: IpPrefix, lengths: readonly PrefixLength[]): string | undefined {
  for (const { family, bits, networks } of lengths) {
    if (family !== inner.family || bits >= inner.bits) continue;
    const outer = parseTarget(`${inner.network}/${bits}`);
    if (outer?.kind === 'prefix' && networks.has(outer.network)) return outer.text;
  }
  return undefined;
}

function nftItems<T>(json: unknown): T[] {
  return ((json as { nftables?: unknown[] } | null)?.nftables ?? []) as T[];
}

function probedTimeout(json: unknown): unknown {
  const items = nftItems<{ set?: { elem?: { elem?: { timeout?: unknown } }[] } }>(json);
  return items.find((i) => i.set)?.set?.elem?.[0]?.elem?.timeout;
}

type Fields = Record<string, unknown>;

/**
 * Judges our table from the terse inet ruleset. `stale`: our sets or chain as they exist but shaped otherwise
 * (another key type or flags, another hook or priority), which `add` cannot change. `missing`: the table, or those of
 * its sets, chain and drop rules that are not there. `complete`: all four sets and the chain in our shape, with a
 * drop rule for each set.
 */
export function inspectLayout(json: unknown, table: string): { stale: string[]; missing: string[]; complete: boolean } {
  const ours = (kind: string): Fields[] =>
    nftItems<Record<string, Fields | undefined>>(json)
      .map((i) => i[kind])
      .filter((o): o is Fields => o?.['family'] === 'inet' && o['table'] === table);
  const stale: string[] = [];
  const sets = new Map(ours('set').map((s) => [s['name'], s]));
  for (const spec of SETS) {
    const found = sets.get(spec.name);
    const flags = Array.isArray(found?.['flags']) ? [...(found['flags'] as unknown[])].sort().join(',') : '';
    if (found && (found['type'] !== spec.type || flags !== [...spec.flags].sort().join(','))) {
      stale.push(`set ${spec.name}`);
    }
  }
  const chain = ours('chain').find((c) => c['name'] === CHAIN_NAME);
  if (chain && (chain['type'] !== 'filter' || chain['hook'] !== 'prerouting' || chain['prio'] !== CHAIN_PRIORITY)) {
    stale.push(`chain ${CHAIN_NAME}`);
  }
  const rules = ours('rule')
    .filter((r) => r['chain'] === CHAIN_NAME)
    .map((r) => JSON.stringify(r['expr']));
  const drops = (set: string) => rules.some((r) => r.includes(`"@${set}"`) && r.includes('"drop"'));
  const complete = stale.length === 0 && chain !== undefined && SETS.every((s) => sets.has(s.name) && drops(s.name));
  const tableThere = nftItems<{ table?: Fields }>(json).some((i) => i.table?.['family'] === 'inet' && i.table['name'] === table);
  const missing = !tableThere
    ? [`table inet ${table}`]
    : [
        ...SETS.filter((s) => !sets.has(s.name)).map((s) => `set ${s.name}`),
        ...(chain === undefined
          ? [`chain ${CHAIN_NAME}`]
          : SETS.filter((s) => sets.has(s.name) && !drops(s.name)).map((s) => `drop rule for @${s.name}`)),
      ];
  return { stale, missing, complete };
}
