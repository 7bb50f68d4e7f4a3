// What `list`, `show` and `status` print of the blocklist feeds. The feeds' records are shared in Redis, whoever
// carries out the verb: through the daemon the CLI still reads them from Redis itself (the daemon's socket carries
// bans, not feeds), and says so instead of failing when Redis cannot be read.
import type { AppConfig } from '../config/schema.js';
import { feedNames } from '../feeds/feeds.js';
import { readFeeds, type FeedReading } from '../feeds/read.js';
import type { Policy } from '../policy/policy.js';
import { usesRedis } from './backends.js';
import { connect, type Connected } from './context.js';

export interface FeedsRead {
  readonly readings: FeedReading[];
  /** why the feeds are not shown, when they are configured and could not be read */
  readonly note?: string;
}

/** With `conn` (the direct path) its Redis; otherwise a connection of its own, closed before returning. */
export async function cliFeeds(cfg: AppConfig, policy: Policy, opts: { entries: boolean }, conn?: Connected): Promise<FeedsRead> {
  if (feedNames(cfg.blocklists).length === 0) return { readings: [] };
  if (!usesRedis(cfg)) {
    return { readings: [], note: "feeds not shown: with the embedded store their entries live in the daemon's memory only" };
  }
  if (conn?.redis) return { readings: await readFeeds(conn.redis, cfg, opts) };
  let own: Connected;
  try {
    own = await connect(cfg, policy);
  } catch (err) {
    return { readings: [], note: `feeds not shown: ${(err as Error).message}` };
  }
  try {
    return { readings: await readFeeds(own.redis!, cfg, opts) };
  } catch (err) {
    return { readings: [], note: `feeds not shown: ${(err as Error).message}` };
  } finally {
    await own.close();
  }
}
