import convict from 'convict';
import { readFileSync } from 'node:fs';
import { schema, type AppConfig } from './schema.js';
import { registerFormats } from './formats.js';

export const ENV_PREFIX = 'AMI_GUARD_';

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

let formatsRegistered = false;

export interface LoadOptions {
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

/**
 * Loads and validates the configuration: defaults, then the JSON file, then AMI_GUARD_* variables. Unknown fields
 * and invalid values are errors naming the field; secret values are never part of a message.
 */
export function loadConfig(opts: LoadOptions = {}): AppConfig {
  if (!formatsRegistered) {
    registerFormats();
    formatsRegistered = true;
  }
  const conf = convict(withEnv(schema as unknown as SchemaNode) as never, { env: opts.env ?? process.env, args: [] });
  if (opts.file) conf.load(readJsonFile(opts.file));
  try {
    conf.validate({ allowed: 'strict' });
  } catch (err) {
    throw new ConfigError(`invalid configuration${opts.file ? ` (${opts.file})` : ''}: ${(err as Error).message}`);
  }
  return conf.getProperties() as unknown as AppConfig;
}

function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`config file ${file} must hold a JSON object`);
    }
    return parsed;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    // V8 quotes the text around a syntax error, which may be the secret: report the position only
    const pos = /position (\d+)/.exec((err as Error).message);
    const where = pos ? ` at ${lineCol(text, Number(pos[1]))}` : '';
    throw new ConfigError(`config file ${file} is not valid JSON${where}`);
  }
}

function lineCol(text: string, pos: number): string {
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const col = pos - before.lastIndexOf('\n');
  return `line ${line}, column ${col}`;
}
