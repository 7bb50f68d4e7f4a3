// The hosts a configuration points ami-guard at: none of them may ever be banned (policy.ignoreself).
import type { AppConfig } from './schema.js';

/** Host names or addresses of the AMI, the Redis URL, the Sentinels and the Cluster nodes. */
export function serviceHosts(cfg: Pick<AppConfig, 'ami' | 'redis'>): string[] {
  const hosts = [cfg.ami.host];
  if (cfg.redis.url) {
    try {
      hosts.push(new URL(cfg.redis.url).hostname);
    } catch {
      // the URL was validated when the configuration was loaded; nothing to add
    }
  }
  for (const hp of [...cfg.redis.sentinels, ...cfg.redis.cluster]) hosts.push(hp.replace(/:\d+$/, ''));
  return hosts;
}
