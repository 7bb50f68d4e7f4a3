import convict from 'convict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { schema, type AppConfig } from './schema.js';
import { registerFormats } from './formats.js';
import { didYouMean } from './nearest.js';

export const ENV_PREFIX = 'AMI_GUARD_';

/** The configuration file read when --config is not given and $AMI_GUARD_CONFIG names none, if it exists. */
export const DEFAULT_CONFIG_FILE = '/etc/ami-guard/config.json';
/** Names the configuration file when --config is not given (containers, tests); the default otherwise. */
export const CONFIG_FILE_ENV = `${ENV_PREFIX}CONFIG`;
/** Where Docker (and compose) mount secrets, one file per secret. */
export const DOCKER_SECRETS_DIR = '/run/secrets';
/** `AMI_GUARD_<PATH>_FILE` names a file holding the value of a secret field. */
const FILE_SUFFIX = '_FILE';
const SECRET_MAX_BYTES = 64 * 1024;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type SchemaNode = { [k: string]: unknown };

function isLeaf(node: SchemaNode): boolean {
  return 'default' in node && 'format' in node;
}

/** Adds `env: AMI_GUARD_<PATH>` to every leaf, so the env names can never drift from the schema. */
function withEnv(node: SchemaNode, path: string[] = []): SchemaNode {
  if (isLeaf(node)) return { ...node, env: ENV_PREFIX + path.join('_').toUpperCase() };
  const out: SchemaNode = {};
  for (const [k, v] of Object.entries(node)) out[k] = withEnv(v as SchemaNode, [...path, k]);
  return out;
}

/** Every env var the configuration reads, with its field path (used by docs and the compose-file check). */
export function envVars(node: SchemaNode = schema as unknown as SchemaNode, path: string[] = []): Map<string, string> {
  const out = new Map<string, string>();
  if (isLeaf(node)) {
    out.set(ENV_PREFIX + path.join('_').toUpperCase(), path.join('.'));
    return out;
  }
  for (const [k, v] of Object.entries(node)) {
    for (const [e, p] of envVars(v as SchemaNode, [...path, k])) out.set(e, p);
  }
  return out;
}

/** The secret fields (the schema marks them `sensitive`) with their variables: the AMI secret, the Redis URL and password, the webhook URL. */
export function secretFields(
  node: SchemaNode = schema as unknown as SchemaNode,
  path: string[] = [],
): Array<{ path: string; env: string }> {
  if (isLeaf(node)) return node.sensitive === true ? [{ path: path.join('.'), env: ENV_PREFIX + path.join('_').toUpperCase() }] : [];
  return Object.entries(node).flatMap(([k, v]) => secretFields(v as SchemaNode, [...path, k]));
}

/** How the configuration file was chosen: by --config, by $AMI_GUARD_CONFIG, the default that exists, or none. */
export interface ConfigFileChoice {
  readonly file: string | undefined;
  readonly how: 'option' | 'environment' | 'default' | 'none';
}

export function chooseConfigFile(
  given: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  defaultFile = DEFAULT_CONFIG_FILE,
): ConfigFileChoice {
  if (given !== undefined) return { file: given, how: 'option' };
  const named = env[CONFIG_FILE_ENV];
  if (named) return { file: named, how: 'environment' };
  return existsSync(defaultFile) ? { file: defaultFile, how: 'default' } : { file: undefined, how: 'none' };
}

let formatsRegistered = false;

export interface LoadOptions {
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** told about AMI_GUARD_* variables the schema does not know (they are ignored, not fatal) */
  warn?: (message: string) => void;
  /** where Docker secrets are looked for (default /run/secrets); '' looks nowhere */
  secretsDir?: string;
}

/**
 * Loads and validates the configuration: defaults, then the JSON file, then AMI_GUARD_* variables. Unknown fields
 * and invalid values are errors naming the field, with the nearest known field when one is close; secret values are
 * never part of a message.
 */
export function loadConfig(opts: LoadOptions = {}): AppConfig {
  if (!formatsRegistered) {
    registerFormats();
    formatsRegistered = true;
  }
  const given = opts.env ?? process.env;
  warnUnknownEnv(given, opts.warn);
  const env = withSecretFiles(given, opts.secretsDir ?? DOCKER_SECRETS_DIR);
  const conf = convict(withEnv(schema as unknown as SchemaNode) as never, { env, args: [] });
  const where = opts.file ? ` (${opts.file})` : '';
  if (opts.file) {
    const content = readJsonFile(opts.file);
    const unknown = unknownFields(content);
    if (unknown.length > 0) throw new ConfigError(`invalid configuration${where}: ${unknown.join('; ')}`);
    conf.load(content);
  }
  try {
    conf.validate({ allowed: 'strict' });
  } catch (err) {
    throw new ConfigError(`invalid configuration${where}: ${(err as Error).message}`);
  }
  const cfg = conf.getProperties() as unknown as AppConfig;
  checkRedisCredentials(cfg, where);
  checkPrefixes(cfg, where);
  if (cfg.blocklists.apiban.key && cfg.blocklists.apiban.keyFile) {
    throw new ConfigError(
      `invalid configuration${where}: blocklists.apiban.key and blocklists.apiban.keyFile are both set: give the key in one place`,
    );
  }
  for (const [field, ms] of [
    ['interval', cfg.blocklists.apiban.interval],
    ['bantime', cfg.blocklists.apiban.bantime],
    ['timeout', cfg.blocklists.timeout],
  ] as const) {
    if (ms < 1000)
      throw new ConfigError(
        `invalid configuration${where}: blocklists.${field === 'timeout' ? '' : 'apiban.'}${field} must be at least 1s`,
      );
  }
  return cfg;
}

/** Every field path of the schema (`policy.maxretry`, …). */
function fieldPaths(node: SchemaNode = schema as unknown as SchemaNode, path: string[] = []): string[] {
  if (isLeaf(node)) return [path.join('.')];
  return Object.entries(node).flatMap(([k, v]) => fieldPaths(v as SchemaNode, [...path, k]));
}

/** Fields of the file the schema does not know, each with the nearest known one when it is close. */
function unknownFields(content: unknown, node: SchemaNode = schema as unknown as SchemaNode, path: string[] = []): string[] {
  if (typeof content !== 'object' || content === null || Array.isArray(content)) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(content)) {
    const child = Object.hasOwn(node, k) ? (node[k] as SchemaNode) : undefined;
    const here = [...path, k];
    if (!child) {
      // a sibling misspelled (`polcy`), or a field misspelled or put in the wrong section (`maxretry` at the top)
      const candidates = [...Object.keys(node).map((n) => [...path, n].join('.')), ...fieldPaths()];
      out.push(`unknown field ${here.join('.')}${didYouMean(here.join('.'), candidates, '.')}`);
    } else if (!isLeaf(child)) {
      out.push(...unknownFields(v, child, here));
    }
  }
  return out;
}

/**
 * Unknown AMI_GUARD_* variables are ignored with a warning rather than refused: the benchmarks set fields of newer
 * schemas this way, and a stray variable in a shell should not stop an unban. A likely typo is named.
 */
function warnUnknownEnv(env: NodeJS.ProcessEnv, warn: ((message: string) => void) | undefined): void {
  if (!warn) return;
  const known = envVars();
  const fileVars = secretFields().map((f) => f.env + FILE_SUFFIX);
  for (const name of Object.keys(env)) {
    if (!name.startsWith(ENV_PREFIX) || known.has(name) || fileVars.includes(name) || name === CONFIG_FILE_ENV) continue;
    if (name.endsWith(FILE_SUFFIX) && known.has(name.slice(0, -FILE_SUFFIX.length))) {
      warn(`${name} is ignored: only secrets can be read from files (${fileVars.join(', ')})`);
      continue;
    }
    warn(`${name} is not a configuration variable and is ignored${didYouMean(name, [...known.keys(), ...fileVars])}`);
  }
}

/** a subnet record names the bans that led to it: this many at most */
export const SUBNET_MAXBANS_MAX = 256;

/**
 * The prefix lengths must nest: a counting prefix or subnet wider than policy.widest could never be banned, and a
 * subnet no wider than the IPv6 counting prefix would escalate a prefix into itself.
 */
function checkPrefixes(cfg: AppConfig, where: string): void {
  const p = cfg.policy;
  const fail = (why: string): never => {
    throw new ConfigError(`invalid configuration${where}: ${why}`);
  };
  if (p.ipv6prefix < p.widest.ipv6)
    fail(`policy.ipv6prefix /${p.ipv6prefix} is wider than policy.widest.ipv6 /${p.widest.ipv6}: such a prefix could never be banned`);
  if (p.subnet.maxbans > SUBNET_MAXBANS_MAX) fail(`policy.subnet.maxbans must be at most ${SUBNET_MAXBANS_MAX}`);
  if (p.subnet.maxbans === 0) return;
  if (p.subnet.ipv4 < p.widest.ipv4) fail(`policy.subnet.ipv4 /${p.subnet.ipv4} is wider than policy.widest.ipv4 /${p.widest.ipv4}`);
  if (p.subnet.ipv6 < p.widest.ipv6) fail(`policy.subnet.ipv6 /${p.subnet.ipv6} is wider than policy.widest.ipv6 /${p.widest.ipv6}`);
  if (p.subnet.ipv4 >= 32) fail('policy.subnet.ipv4 must be shorter than /32: a subnet of one address escalates nothing');
  if (p.subnet.ipv6 >= p.ipv6prefix)
    fail(
      `policy.subnet.ipv6 /${p.subnet.ipv6} must be shorter than policy.ipv6prefix /${p.ipv6prefix}: IPv6 is counted per /${p.ipv6prefix}`,
    );
  if (p.subnet.bantime < 1000) fail('policy.subnet.bantime must be at least 1s');
}

/**
 * The environment with each secret field filled from a file, where one is given, so no secret needs to sit in an
 * environment variable (which every child process inherits) or in the configuration file. In order: the variable
 * itself (AMI_GUARD_AMI_SECRET), a file it names (AMI_GUARD_AMI_SECRET_FILE; both at once is refused), a systemd
 * credential ($CREDENTIALS_DIRECTORY/ami.secret, from LoadCredential=), a Docker secret (/run/secrets/ami.secret).
 * Each file is read once, here; a trailing newline is dropped; nothing of its content reaches a message.
 */
function withSecretFiles(env: NodeJS.ProcessEnv, secretsDir: string): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const { path, env: name } of secretFields()) {
    const fileVar = name + FILE_SUFFIX;
    const named = env[fileVar];
    if (named) {
      if (env[name]) throw new ConfigError(`${name} and ${fileVar} are both set: give the secret one way`);
      out[name] = readSecret(named, `${fileVar} names ${named}`);
      continue;
    }
    if (env[name]) continue;
    for (const [dir, what] of [
      [env.CREDENTIALS_DIRECTORY, 'the systemd credential'],
      [secretsDir, 'the secret'],
    ] as const) {
      if (!dir) continue;
      const file = join(dir, path);
      if (existsSync(file)) {
        out[name] = readSecret(file, `${what} ${file}`);
        break;
      }
    }
  }
  return out;
}

function readSecret(file: string, what: string): string {
  let text: string;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new ConfigError(`${what}, which is not a regular file`);
    if (st.size > SECRET_MAX_BYTES) throw new ConfigError(`${what}, which is larger than a secret can be (${SECRET_MAX_BYTES} bytes)`);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ConfigError(`${what}, which does not exist`);
    if (code === 'EACCES') throw new ConfigError(`${what}, which this user cannot read (permission denied)`);
    throw new ConfigError(`${what}, which cannot be read: ${code ?? 'error'}`);
  }
  const value = text.replace(/(\r?\n)+$/, '');
  if (value === '') throw new ConfigError(`${what}, which is empty`);
  return value;
}

/**
 * Removes the secret variables (AMI_GUARD_AMI_SECRET, …) from `env` once the configuration is read, so no child
 * process (nft, ip) inherits them. Returns what was there, for a reload to read the same values again.
 */
export function takeSecretEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const snapshot: NodeJS.ProcessEnv = { ...env };
  for (const { env: name } of secretFields()) delete env[name];
  return snapshot;
}

/** `redis.username` / `redis.password` may complete `redis.url`, but a credential given twice is a mistake. */
function checkRedisCredentials(cfg: AppConfig, where: string): void {
  if (!cfg.redis.url) return;
  const u = new URL(cfg.redis.url);
  const inUrl = {
    password: Boolean(u.password || u.searchParams.has('password')),
    username: Boolean(u.username || u.searchParams.has('username')),
  };
  for (const field of ['password', 'username'] as const) {
    if (cfg.redis[field] && inUrl[field]) {
      throw new ConfigError(
        `invalid configuration${where}: redis.${field} is set and redis.url carries a ${field} too: give it in one place`,
      );
    }
  }
}

function readJsonFile(file: string): unknown {
  const named = resolve(file) === file ? file : `${file} (${resolve(file)})`;
  let text: string;
  try {
    if (statSync(file).isDirectory()) throw new ConfigError(`config file ${named} is a directory, not a JSON file`);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ConfigError(`config file ${named} does not exist`);
    if (code === 'EACCES') throw new ConfigError(`config file ${named} cannot be read by this user (permission denied)`);
    throw new ConfigError(`cannot read config file ${named}: ${code ?? (err as Error).message}`);
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`config file ${named} must hold a JSON object`);
    }
    return parsed;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    // V8 quotes the text around a syntax error, which may be the secret: report the position only
    const pos = /position (\d+)/.exec((err as Error).message);
    const where = pos ? ` at ${lineCol(text, Number(pos[1]))}` : '';
    throw new ConfigError(`config file ${named} is not valid JSON${where}`);
  }
}

function lineCol(text: string, pos: number): string {
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const col = pos - before.lastIndexOf('\n');
  return `line ${line}, column ${col}`;
}
