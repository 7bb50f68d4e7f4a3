// The community blocklists of `ami-guard run`: APIBAN and plain lists, built from the configuration, each run by its
// own FeedRunner over the shared state, all enforced through one FeedEnforcer in front of the firewall.
import { readFileSync } from 'node:fs';
import type { AppConfig } from '../config/schema.js';
import { parseDuration } from '../config/duration.js';
import type { Logger } from '../log.js';
import type { FeedMetrics } from '../metrics.js';
import type { Policy } from '../policy/policy.js';
import type { FeedEnforcer } from './enforcer.js';
import { describeSource } from './fetch.js';
import { FeedRunner } from './runner.js';
import { ApibanSource, PlainListSource, type FeedSource } from './sources.js';
import type { FeedStateStore } from './state.js';

const DEFAULT_LIST_INTERVAL_MS = 4 * 3_600_000;
/** one APIBAN answer at most: a page is a few hundred addresses, a few KiB */
const MAX_PAGE_BYTES = 4 * 1024 * 1024;
/** pages per pull at most; the rest comes with the next pull */
const MAX_PAGES = 1_000;
/** one plain list at most (VoIPBL is about 1.5 MB for ~90k entries) */
const MAX_LIST_BYTES = 64 * 1024 * 1024;

/** A key file that cannot be read: the daemon stops at start, naming the file and why. */
export class FeedConfigError extends Error {
  override readonly name = 'FeedConfigError';
}

/** The APIBAN key: blocklists.apiban.key, or the content of keyFile. Never part of an error. */
export function apibanKey(cfg: AppConfig['blocklists']['apiban']): string {
  if (cfg.key) return cfg.key;
  if (!cfg.keyFile) return '';
  let text: string;
  try {
    text = readFileSync(cfg.keyFile, 'utf8');
  } catch (err) {
    throw new FeedConfigError(
      `cannot read blocklists.apiban.keyFile ${cfg.keyFile}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`,
    );
  }
  const key = text.trim();
  if (!key) throw new FeedConfigError(`blocklists.apiban.keyFile ${cfg.keyFile} is empty`);
  if (/[\s\u0000-\u001f\u007f]/.test(key))
    throw new FeedConfigError(`blocklists.apiban.keyFile ${cfg.keyFile} holds more than one word: give the key alone`);
  return key;
}

/** The configured feeds' names, in the order they run (APIBAN first when it has a key). */
export function feedNames(cfg: AppConfig['blocklists']): string[] {
  return [...(cfg.apiban.key || cfg.apiban.keyFile ? ['apiban'] : []), ...cfg.lists.map((l) => l.name)];
}

export interface FeedDescription {
  readonly name: string;
  readonly kind: 'apiban' | 'list';
  readonly intervalMs: number;
  /** where it pulls from, secrets masked */
  readonly where: string;
  /** APIBAN: how long an entry is held after it was last seen */
  readonly bantimeMs?: number;
}

/** What `list`, `show` and `status` need to know of each configured feed (no key, nothing is fetched). */
export function describeFeeds(cfg: AppConfig['blocklists']): FeedDescription[] {
  const out: FeedDescription[] = [];
  if (cfg.apiban.key || cfg.apiban.keyFile) {
    out.push({
      name: 'apiban',
      kind: 'apiban',
      intervalMs: cfg.apiban.interval,
      where: describeSource(cfg.apiban.url),
      bantimeMs: cfg.apiban.bantime,
    });
  }
  for (const l of cfg.lists) {
    out.push({ name: l.name, kind: 'list', intervalMs: listInterval(l.interval), where: describeSource(l.url) });
  }
  return out;
}

function listInterval(interval: string | number | undefined): number {
  return interval === undefined ? DEFAULT_LIST_INTERVAL_MS : (parseDuration(interval) ?? DEFAULT_LIST_INTERVAL_MS);
}

function sources(cfg: AppConfig['blocklists'], widest: AppConfig['policy']['widest'], key: string): FeedSource[] {
  const bounds = { timeoutMs: cfg.timeout, maxEntries: cfg.maxEntries, widest };
  const out: FeedSource[] = [];
  if (key) {
    out.push(
      new ApibanSource({
        ...bounds,
        url: cfg.apiban.url,
        key,
        intervalMs: cfg.apiban.interval,
        bantimeMs: cfg.apiban.bantime,
        maxPageBytes: MAX_PAGE_BYTES,
        maxPages: MAX_PAGES,
      }),
    );
  }
  for (const l of cfg.lists) {
    out.push(
      new PlainListSource(l.name, describeSource(l.url), {
        ...bounds,
        url: l.url,
        intervalMs: listInterval(l.interval),
        maxBytes: MAX_LIST_BYTES,
      }),
    );
  }
  return out;
}

export interface FeedsOptions {
  readonly cfg: AppConfig['blocklists'];
  readonly widest: AppConfig['policy']['widest'];
  /** apibanKey(cfg.apiban), read once at start */
  readonly apibanKey: string;
  readonly state: FeedStateStore;
  readonly enforcer: FeedEnforcer;
  readonly policy: Policy;
  readonly nodeId: string;
  readonly logger: Logger;
  readonly metrics?: FeedMetrics;
}

export class Feeds {
  readonly runners: FeedRunner[];

  constructor(o: FeedsOptions) {
    this.runners = sources(o.cfg, o.widest, o.apibanKey).map(
      (source) =>
        new FeedRunner({
          source,
          state: o.state,
          enforcer: o.enforcer,
          policy: o.policy,
          nodeId: o.nodeId,
          maxEntries: o.cfg.maxEntries,
          timeoutMs: o.cfg.timeout,
          logger: o.logger,
          ...(o.metrics ? { metrics: o.metrics } : {}),
        }),
    );
  }

  /** Each feed's shared state read once, before the start-up reconciliation writes it with the store's bans. */
  async load(): Promise<void> {
    for (const r of this.runners) await r.load();
  }

  start(): void {
    for (const r of this.runners) r.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.runners.map((r) => r.stop()));
  }

  /** A reloaded policy (SIGHUP) for every feed's view from the next rebuild on. */
  setPolicy(policy: Policy): void {
    for (const r of this.runners) r.setPolicy(policy);
  }

  /** every feed's view built again from what was pulled (the enforcer calls this as a reconciliation starts) */
  rebuild(): void {
    for (const r of this.runners) r.rebuild();
  }
}
