#!/usr/bin/env -S node --max-old-space-size=256 --max-semi-space-size=8
// Entry point of the `ami-guard` command. Exit codes: 0 success, 1 runtime failure (Redis unreachable, nft
// unusable), 2 usage or configuration error (a bad address, an unknown option, an invalid config field).
import { Command, CommanderError } from 'commander';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, readCliConfig, type ConfigOption } from './context.js';
import { DEFAULT_CONFIG_FILE, ConfigError, loadConfig } from '../config/load.js';
import { version } from './version.js';
import { runDaemon } from './run.js';
import { ban } from './commands/ban.js';
import { unban } from './commands/unban.js';
import { list } from './commands/list.js';
import { show } from './commands/show.js';
import { status } from './commands/status.js';
import { replay } from './commands/replay.js';
import { record } from './commands/record.js';
import { ORIGINS, SORT_KEYS, collectList } from './ban-query.js';
import { LABEL_VALUES } from '../metrics.js';

function withConfig(cmd: Command): Command {
  return cmd.option(
    '-c, --config <file>',
    `JSON configuration file (default: $AMI_GUARD_CONFIG, else ${DEFAULT_CONFIG_FILE} if it exists; AMI_GUARD_* variables override it)`,
  );
}

/**
 * `run`: the configuration, refused when nothing at all configures AMI (no file read, no AMI_GUARD_AMI_* variable, no
 * secret): a daemon started so would only retry a login that cannot work. SIGHUP reads the same sources again.
 */
function daemon(opts: ConfigOption & { detectOnly?: boolean }): Promise<number> {
  const loaded = readCliConfig(opts);
  const { cfg, choice, env } = loaded;
  if (choice.how === 'none' && cfg.ami.secret === '' && !Object.keys(env).some((k) => k.startsWith('AMI_GUARD_AMI_'))) {
    throw new CliError(
      EXIT_USAGE,
      `no configuration: --config not given, ${DEFAULT_CONFIG_FILE} does not exist, and no AMI_GUARD_AMI_* variable or secret file configures AMI; give --config FILE or create ${DEFAULT_CONFIG_FILE}`,
    );
  }
  return runDaemon(
    cfg,
    {
      file: choice.file,
      load: () => {
        try {
          return loadConfig({ file: choice.file, env, warn: (m) => process.stderr.write(`ami-guard: warning: ${m}\n`) });
        } catch (err) {
          if (err instanceof ConfigError) throw err;
          throw new ConfigError((err as Error).message);
        }
      },
    },
    { detectOnly: opts.detectOnly === true },
  );
}

/** the filters `list` and `unban --all` share; each takes a comma-separated list and may be repeated */
function withFilters(cmd: Command): Command {
  return cmd
    .option('--reason <reasons>', `only bans for these reasons (${LABEL_VALUES.banReason.join(', ')}, or a feed's name)`, collectList)
    .option('--node <nodes>', 'only bans made by these nodes (node.id)', collectList)
    .option(
      '--origin <origins>',
      `only bans made by the ${ORIGINS.join(', the ')} (manual bans are the CLI's; feed: blocklists)`,
      collectList,
    );
}

function program(setResult: (p: Promise<number>) => void): Command {
  const root = new Command('ami-guard')
    .description('Intrusion prevention for Asterisk: AMI security events -> Redis -> nftables bans')
    .version(version(), '-V, --version')
    .exitOverride()
    .showHelpAfterError('(ami-guard --help lists the commands)');

  withConfig(root.command('run').description('run the daemon: watch AMI security events and ban attackers'))
    .option('--detect-only', 'decide and log the bans it would make ("would ban"), enforce none: no nft, no Redis, no fleet')
    .action((opts: ConfigOption & { detectOnly?: boolean }) => setResult(daemon(opts)));

  withConfig(root.command('ban').description('ban addresses or CIDR networks by hand, on every PBX sharing the Redis'))
    .argument('<address...>', 'IPv4/IPv6 addresses or CIDR networks')
    .option('--for <duration>', 'ban duration, e.g. 90s, 10m, 1h, 3d (default: policy.bantime)')
    .option('--permanent', 'until unbanned: the longest a kernel timeout holds (3 years)')
    .option('--reason <text>', 'a note kept with the ban (its reason is recorded as "manual")')
    .option('--json', 'machine-readable output')
    .action((args: string[], opts) => setResult(ban(args, opts)));

  withFilters(withConfig(root.command('unban').description("lift bans everywhere: Redis record, failure counters, every PBX's nft set")))
    .argument('[address...]', 'IPv4/IPv6 addresses or CIDR networks')
    .option('--all', 'every active ban (or those the filters choose)')
    .option('-y, --yes', 'confirm --all')
    .option('--json', 'machine-readable output')
    .action((args: string[], opts) => setResult(unban(args, opts)));

  withFilters(withConfig(root.command('list').description('list active bans')))
    .option('--sort <key>', `order by ${SORT_KEYS.join(', ')} (default: left, soonest to expire first)`)
    .option('-r, --reverse', 'reverse the order')
    .option('--json', 'machine-readable output (a JSON array; streamed when not sorted)')
    .action((opts) => setResult(list(opts)));

  withConfig(root.command('show').description('everything known about one address: ban, failures, history, ignore list'))
    .argument('<address>', 'an IPv4/IPv6 address or CIDR network')
    .option('--json', 'machine-readable output')
    .action((arg: string, opts) => setResult(show([arg], opts)));

  withConfig(root.command('status').description('daemons, Redis, the nft table, bans by reason'))
    .option('--json', 'machine-readable output')
    .action((opts) => setResult(status(opts)));

  withConfig(
    root.command('replay').description("dry run: what the current policy would ban in a recorded AMI stream or in Asterisk's security log"),
  )
    .argument(
      '<file>',
      'a recording (.ami raw AMI bytes, .jsonl one {t_ms, conn, raw} per message) or a security.log (also gzipped; - reads stdin)',
    )
    .option('-v, --verbose', 'show every event and the decision taken on it')
    .option('--json', 'machine-readable output (with --verbose: one JSON object per line, the report last)')
    .action((file: string, opts) => setResult(replay([file], opts)));

  withConfig(root.command('record').description('capture the live AMI stream to a file, for a later replay'))
    .argument('<file>', 'a new file: .jsonl (one {t_ms, conn, raw} per message) or .ami (the raw bytes)')
    .option('--duration <duration>', 'stop after this long, e.g. 90s, 10m, 1h (default: until Ctrl-C)')
    .action((file: string, opts) => setResult(record([file], opts)));

  for (const cmd of root.commands) cmd.exitOverride();
  return root;
}

async function main(argv: string[]): Promise<number> {
  let result: Promise<number> = Promise.resolve(EXIT_OK);
  try {
    await program((p) => {
      result = p;
    }).parseAsync(argv);
    return await result;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    if (err instanceof CliError) {
      process.stderr.write(`ami-guard: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}

// a reader that went away (`ami-guard replay -v log | head`) ends the command quietly, not with a stack trace
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(EXIT_OK);
  throw err;
});

main(process.argv).then(
  (code) => {
    // exit once stdout is flushed (a long listing on a pipe is written asynchronously); a daemon that stopped or a
    // verb that answered leaves nothing else worth waiting for, such as a client's reconnect timer
    process.stdout.write('', () => process.exit(code));
  },
  (err: unknown) => {
    process.stderr.write(`ami-guard: ${(err as Error).message}\n`);
    process.exit(EXIT_FAILURE);
  },
);
