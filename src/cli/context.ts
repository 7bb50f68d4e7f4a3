// What every CLI verb needs: the same configuration as the daemon, a Redis connection that fails fast with a
// clear message, the local nft table if there is one, and addresses validated before anything is written.
import { pino } from 'pino';
import { chooseConfigFile, loadConfig, takeSecretEnv, ConfigError, DEFAULT_CONFIG_FILE, type ConfigFileChoice } from '../config/load.js';
import type { AppConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { type Policy } from '../policy/policy.js';
import { parseTarget, type IpTarget } from '../net/ip.js';
import { learnHost } from '../policy/never-ban.js';
import { serviceHosts } from '../config/services.js';
import { NftFirewall } from '../firewall/nft.js';
import { createBackends, describeRedis, originId, usesRedis, type Backends } from './backends.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** An error the CLI reports as one line, with its exit code. */
export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

export interface ConfigOption {
  config?: string;
}

/** The configuration as read, where it came from, and the environment it was read from (for a reload). */
export interface LoadedConfig {
  readonly cfg: AppConfig;
  readonly choice: ConfigFileChoice;
  /** the environment as it was, secrets included; process.env no longer holds the secret variables */
  readonly env: NodeJS.ProcessEnv;
}

/**
 * Reads the configuration: --config, else $AMI_GUARD_CONFIG, else /etc/ami-guard/config.json when it exists, with
 * AMI_GUARD_* variables and secret files over it. The secret variables then leave process.env, so no child process
 * (nft, ip) inherits them.
 */
export function readCliConfig(opts: ConfigOption): LoadedConfig {
  try {
    const choice = chooseConfigFile(opts.config);
    // stderr, so a verb's answer on stdout (and the daemon's JSON log lines) stay clean
    const cfg = loadConfig({ file: choice.file, warn: (m) => process.stderr.write(`ami-guard: warning: ${m}\n`) });
    return { cfg, choice, env: takeSecretEnv(process.env) };
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(EXIT_USAGE, err.message);
    throw err;
  }
}

export function loadCliConfig(opts: ConfigOption): AppConfig {
  return readCliConfig(opts).cfg;
}

/** Said when a verb finds nothing to ask: no configuration file was read (none given, the default missing). */
export function noConfigFileHint(choice: ConfigFileChoice): string {
  return choice.how === 'none' ? `; no configuration file was read (--config not given, ${DEFAULT_CONFIG_FILE} does not exist)` : '';
}

/** The CLI keeps stdout for its answer; the libraries' own log lines are of no use to someone at a prompt. */
export const quietLogger: Logger = pino({ level: 'silent' });

const REDIS_DEADLINE_MS = 4_000;

export interface Connected extends Backends {
  readonly origin: string;
  close(): Promise<void>;
}

/** Opens the shared Redis, or fails within a few seconds with the URL (password hidden) and the reason. */
export async function connect(cfg: AppConfig, policy: Policy): Promise<Connected> {
  if (!usesRedis(cfg)) {
    throw new CliError(
      EXIT_FAILURE,
      'no Redis configured (redis.url, redis.sentinels or redis.cluster): the embedded store lives inside the daemon process and cannot be reached from the CLI',
    );
  }
  const backends = createBackends(cfg, policy, quietLogger, { failFast: true });
  const redis = backends.redis!;
  // a failed command only says the retries ran out; the connection's own error says why (refused, TLS, auth)
  let cause: Error | undefined;
  const onError = (err: Error): void => {
    cause ??= err;
  };
  redis.on('error', onError);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${REDIS_DEADLINE_MS / 1000} s`)), REDIS_DEADLINE_MS);
      }),
    ]);
  } catch (err) {
    redis.disconnect();
    throw new CliError(EXIT_FAILURE, `cannot reach Redis at ${describeRedis(cfg)}: ${(cause ?? (err as Error)).message}`);
  } finally {
    clearTimeout(timer);
    redis.off('error', onError);
  }
  return {
    ...backends,
    origin: originId('cli'),
    async close() {
      await backends.channel.stop();
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

/** Parses every argument before anything is applied, so a typo in the third address changes nothing at all. */
export function parseTargets(args: readonly string[], opts: { allowNetworks: boolean }): IpTarget[] {
  return args.map((arg) => {
    const t = parseTarget(arg.trim());
    if (!t || (!opts.allowNetworks && t.kind === 'prefix')) {
      throw new CliError(EXIT_USAGE, `invalid ${opts.allowNetworks ? 'address or CIDR network' : 'address'}: ${JSON.stringify(arg)}`);
    }
    return t;
  });
}

/** Refuses, before anything is written, a ban the daemon would never apply: see Policy.refusal. */
export async function refuseUnbannable(targets: readonly IpTarget[], policy: Policy, cfg: AppConfig): Promise<void> {
  await learnHost(policy.neverBan, serviceHosts(cfg));
  for (const t of targets) {
    const why = policy.refusal(t);
    if (why) throw new CliError(EXIT_USAGE, `refusing to ban ${t.text}: ${why}`);
  }
}

/**
 * This host's nft table, when there is one and we may touch it: bans and unbans take effect here at once, without
 * waiting for the local daemon to read them from the fleet channel. Elsewhere (an admin box) there is none.
 */
export async function localFirewall(cfg: AppConfig): Promise<NftFirewall | undefined> {
  const fw = new NftFirewall({ table: cfg.nft.table, nftPath: cfg.nft.path, netns: cfg.nft.netns || undefined, logger: quietLogger });
  try {
    return (await fw.present()) ? fw : undefined;
  } catch {
    return undefined;
  }
}
