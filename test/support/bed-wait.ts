// Waits on a bed that say what the daemon was doing when they time out, and never hang on a daemon that died.
import type { Bed } from './bed.js';
import { waitFor } from './netns.js';

/** Once the recording has been played, so events injected after it reach a logged-in daemon. */
export async function played(bed: Bed): Promise<void> {
  const died = bed.daemon.exited.then((code) => {
    throw new Error(`the daemon exited (${String(code)}); output:\n${bed.daemon.output().slice(-4000)}`);
  });
  await Promise.race([bed.replay.playDone, died]);
}

/** Waits until `address` is in our sets; a timeout's error carries the daemon's log. */
export async function bannedInKernel(
  bed: Bed,
  address: string,
  timeoutMs: number,
  what = `${address} banned in the kernel`,
): Promise<void> {
  try {
    await waitFor(what, async () => ((await bed.elements()).includes(address) ? true : undefined), timeoutMs);
  } catch (err) {
    throw new Error(`${(err as Error).message}; daemon output:\n${bed.daemon.output().slice(-6000)}`);
  }
}
