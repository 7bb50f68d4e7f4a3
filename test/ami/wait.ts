import { setTimeout as sleep } from 'node:timers/promises';

/** Polls until `check()` holds; fails naming `what` after `timeoutMs`. Bounded, so a broken test cannot hang. */
export async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}
