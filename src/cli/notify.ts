// A ban or unban made from the CLI is announced by the CLI itself, once: every daemon applies it, and if each
// posted it too the webhook would hear it once per PBX.
import { hostname } from 'node:os';
import type { AppConfig } from '../config/schema.js';
import { Metrics } from '../metrics.js';
import { WebhookNotifier } from '../notify/webhook.js';
import type { BanRecord } from '../store/store.js';
import { quietLogger } from './context.js';

export async function announce(cfg: AppConfig, bans: readonly BanRecord[], unbans: readonly string[]): Promise<void> {
  const w = cfg.notify.webhook;
  if (!w.url || (bans.length === 0 && unbans.length === 0)) return;
  const notifier = new WebhookNotifier({
    url: w.url,
    timeoutMs: w.timeout,
    retries: w.retries,
    queueSize: w.queue,
    nodeId: cfg.node.id,
    logger: quietLogger,
    metrics: new Metrics(),
  });
  for (const b of bans) notifier.notifyBan(b);
  for (const a of unbans) notifier.notifyUnban(a, `ami-guard unban on ${hostname()}`);
  // a CLI must not hang on a dead webhook: one attempt each within the close grace
  await notifier.close();
}
