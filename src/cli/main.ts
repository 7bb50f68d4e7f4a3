#!/usr/bin/env node
// Entry point of the `ami-guard` command. Exit codes: 0 success, 1 runtime failure (Redis, nft, AMI unreachable),
// 2 usage or configuration error.
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { loadConfig, ConfigError } from '../config/load.js';
import { runDaemon } from './run.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const program = new Command('ami-guard')
    .description('Intrusion prevention for Asterisk: AMI security events -> Redis -> nftables bans')
    .version(version(), '-V, --version')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  let result: Promise<number> = Promise.resolve(EXIT_OK);
  program
    .command('run')
    .description('run the daemon: watch AMI security events and ban attackers')
    .option('-c, --config <file>', 'JSON configuration file (AMI_GUARD_* environment variables override it)')
    .action((opts: { config?: string }) => {
      const cfg = loadConfig({ file: opts.config });
      result = runDaemon(cfg);
    });

  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    if (err instanceof ConfigError) {
      process.stderr.write(`ami-guard: ${err.message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
  return result;
}

main(process.argv).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`ami-guard: ${(err as Error).message}\n`);
    process.exit(EXIT_FAILURE);
  },
);
