// What a reload (SIGHUP) may change in a running daemon. The policy and the log level change at once; settings that
// shape connections and the kernel table (AMI, Redis, nft, the HTTP listener, the control socket, the node's name)
// keep their running values until a restart, and each such change is named. Later settings join RELOADABLE as the
// daemon learns to take them on.
import { envVars } from './load.js';
import type { AppConfig } from './schema.js';

/** Field paths (or whole sections, ending in `.`) a running daemon takes on at a reload. */
export const RELOADABLE: readonly string[] = ['policy.', 'log.level'];

export function reloadable(path: string): boolean {
  return RELOADABLE.some((r) => (r.endsWith('.') ? path.startsWith(r) : path === r));
}

export interface ReloadPlan {
  /** the configuration to run with: the new values of reloadable fields, the running values of the others */
  readonly next: AppConfig;
  /** reloadable fields whose value changed */
  readonly applied: readonly string[];
  /** fields that changed but keep their running value until a restart (names only: some are secrets) */
  readonly restartNeeded: readonly string[];
}

function at(cfg: AppConfig, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], cfg);
}

function put(cfg: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let o = cfg;
  for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
  o[keys[keys.length - 1]!] = value;
}

export function planReload(running: AppConfig, loaded: AppConfig): ReloadPlan {
  const next = structuredClone(running);
  const applied: string[] = [];
  const restartNeeded: string[] = [];
  for (const path of new Set(envVars().values())) {
    const now = at(running, path);
    const then = at(loaded, path);
    if (JSON.stringify(now) === JSON.stringify(then)) continue;
    if (reloadable(path)) {
      put(next as unknown as Record<string, unknown>, path, structuredClone(then));
      applied.push(path);
    } else {
      restartNeeded.push(path);
    }
  }
  return { next, applied, restartNeeded };
}
