// Custom convict formats. Each coerces what an env var can carry (a string) and validates with a message that
// names what is wrong; convict prefixes it with the field's path.
import convict from 'convict';
import { isIP } from 'node:net';
import { parseDuration } from './duration.js';
import { parseTarget } from '../net/ip.js';
import { SECURITY_EVENT_KINDS } from './schema.js';
import { didYouMean } from './nearest.js';

function asList(value: unknown): unknown[] {
  if (Array.isArray(value)) return value;
  if (typeof value === 'string')
    return value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
  return [value];
}

export const NFT_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;
const EVENT_NAME = /^[A-Za-z][A-Za-z0-9]{0,63}$/;
// braces would move the Redis Cluster hash tag; whitespace makes keys unreadable in redis-cli
const KEY_PREFIX = /^[A-Za-z0-9:_.-]{0,64}$/;
const NODE_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const NETNS = /^([A-Za-z0-9_.-]{1,64}|\/[A-Za-z0-9_./-]{1,255})$/;

export function registerFormats(): void {
  convict.addFormat({
    name: 'duration',
    coerce: (v: unknown) => {
      const ms = parseDuration(v);
      return ms === null ? v : ms;
    },
    validate: (v: unknown) => {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
        throw new Error('must be a duration such as 90s, 10m, 1h, 3d or a number of seconds');
      }
    },
  });
  convict.addFormat({
    name: 'positive-int',
    coerce: (v: unknown) => (typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v),
    validate: (v: unknown) => {
      if (!Number.isInteger(v) || (v as number) < 1) throw new Error('must be a positive integer');
    },
  });
  for (const [name, max] of [
    ['prefix-v4', 32],
    ['prefix-v6', 128],
  ] as const) {
    convict.addFormat({
      name,
      coerce: (v: unknown) => (typeof v === 'string' && /^\/?\d+$/.test(v.trim()) ? Number(v.trim().replace('/', '')) : v),
      validate: (v: unknown) => {
        if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > max) throw new Error(`must be a prefix length from 0 to ${max}`);
      },
    });
  }
  convict.addFormat({
    name: 'ip-list',
    coerce: asList,
    validate: (v: unknown) => {
      for (const item of asList(v)) {
        if (typeof item !== 'string' || parseTarget(item) === null) {
          throw new Error(`${JSON.stringify(item)} is not an IP address or CIDR network`);
        }
      }
    },
  });
  convict.addFormat({
    name: 'weights',
    coerce: (v: unknown) => {
      if (typeof v !== 'string') return v;
      const text = v.trim();
      if (text.startsWith('{')) {
        try {
          return JSON.parse(text) as unknown;
        } catch {
          return v;
        }
      }
      // Kind=2,Other=0: the environment's spelling
      const out: Record<string, unknown> = {};
      for (const pair of asList(text)) {
        const [k, n] = String(pair).split('=');
        out[k?.trim() ?? ''] = n !== undefined && /^\d+$/.test(n.trim()) ? Number(n) : n;
      }
      return out;
    },
    validate: (v: unknown) => {
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('must map event kinds to weights, e.g. {"RequestBadFormat": 2}');
      for (const [k, n] of Object.entries(v)) {
        // a misspelled kind would weigh nothing and change nothing: refuse it rather than ignore it
        if (!SECURITY_EVENT_KINDS.includes(k)) {
          throw new Error(
            `${JSON.stringify(k)} is not a security event kind${didYouMean(k, SECURITY_EVENT_KINDS)}; known kinds: ${SECURITY_EVENT_KINDS.join(', ')}`,
          );
        }
        if (!Number.isInteger(n) || (n as number) < 0 || (n as number) > 100)
          throw new Error(`weight of ${k} must be an integer from 0 to 100`);
      }
    },
  });
  convict.addFormat({
    name: 'factor',
    coerce: (v: unknown) => (typeof v === 'string' && /^\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : v),
    validate: (v: unknown) => {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 1 || v > 100) throw new Error('must be a number from 1 to 100');
    },
  });
  convict.addFormat({
    name: 'event-names',
    coerce: asList,
    validate: (v: unknown) => {
      for (const item of asList(v)) {
        if (typeof item !== 'string' || !EVENT_NAME.test(item)) {
          throw new Error(`${JSON.stringify(item)} is not an AMI event name`);
        }
      }
    },
  });
  convict.addFormat({
    name: 'nft-name',
    validate: (v: unknown) => {
      if (typeof v !== 'string' || !NFT_NAME.test(v)) {
        throw new Error('must be an nftables identifier: a letter or _, then letters, digits or _ (at most 32)');
      }
    },
  });
  convict.addFormat({
    name: 'host-port-list',
    coerce: asList,
    validate: (v: unknown) => {
      for (const item of asList(v)) {
        if (typeof item !== 'string' || parseHostPort(item) === null) {
          throw new Error(`${JSON.stringify(item)} is not host:port (IPv6 as [addr]:port)`);
        }
      }
    },
  });
  convict.addFormat({
    name: 'node-id',
    validate: (v: unknown) => {
      if (typeof v !== 'string' || !NODE_ID.test(v)) throw new Error('must be 1 to 64 characters from A-Z a-z 0-9 _ . -');
    },
  });
  convict.addFormat({
    name: 'key-prefix',
    validate: (v: unknown) => {
      if (typeof v !== 'string' || !KEY_PREFIX.test(v)) {
        throw new Error('must be at most 64 characters from A-Z a-z 0-9 : _ . -');
      }
    },
  });
  convict.addFormat({
    name: 'netns',
    validate: (v: unknown) => {
      if (typeof v !== 'string' || (v !== '' && !NETNS.test(v))) {
        throw new Error('must be empty, a namespace name (ip netns) or an absolute path such as /proc/1234/ns/net');
      }
    },
  });
  convict.addFormat({
    name: 'socket-path',
    validate: (v: unknown) => {
      // sun_path holds 108 bytes with its terminating NUL
      if (typeof v !== 'string' || (v !== '' && (!v.startsWith('/') || Buffer.byteLength(v) > 107 || v.includes('\u0000')))) {
        throw new Error('must be empty or an absolute path of at most 107 bytes, e.g. /run/ami-guard/control.sock');
      }
    },
  });
  convict.addFormat({
    name: 'ip-address',
    validate: (v: unknown) => {
      if (typeof v !== 'string' || isIP(v) === 0) throw new Error('must be an IPv4 or IPv6 address, e.g. 127.0.0.1 or ::1');
    },
  });
  convict.addFormat({
    name: 'blocklists',
    coerce: (v: unknown) => {
      if (typeof v !== 'string') return v;
      try {
        return JSON.parse(v) as unknown;
      } catch {
        return v;
      }
    },
    validate: validateBlocklists,
  });
  convict.addFormat(urlFormat('http-url', ['http:', 'https:'], 'https://…'));
  convict.addFormat(urlFormat('webhook-url', ['http:', 'https:'], 'http://… or https://…'));
  convict.addFormat(urlFormat('redis-url', ['redis:', 'rediss:'], 'redis://[user:password@]host:port[/db] or rediss://…'));
  convict.addFormat({
    name: 'state-dir',
    validate: (v: unknown) => {
      if (typeof v !== 'string' || !v.startsWith('/') || v === '/' || Buffer.byteLength(v) > 1024 || /[\u0000-\u001f]/.test(v)) {
        throw new Error('must be an absolute path of a directory, e.g. /var/lib/ami-guard');
      }
    },
  });
}

/** `host:port` or `[v6]:port` → parts; null when it is neither. */
export function parseHostPort(text: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: (m[1] ?? m[2])!, port };
}

/** An optional URL of given schemes. The value is never echoed: it may carry a password or a token. */
function urlFormat(name: string, protocols: readonly string[], expected: string): convict.Format {
  return {
    name,
    validate: (v: unknown) => {
      if (typeof v !== 'string') throw new Error('must be a string');
      if (v === '') return;
      let u: URL;
      try {
        u = new URL(v);
      } catch {
        throw new Error(`is not a valid URL (expected ${expected})`);
      }
      if (!protocols.includes(u.protocol)) throw new Error(`must use ${protocols.map((p) => `${p}//`).join(' or ')}, not ${u.protocol}//`);
    },
  };
}

/** a feed's name: the reason `list` and `show` print, a metric label value and part of a Redis key */
export const FEED_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;
/** names a list may not take: APIBAN's, and the daemon's own ban reasons (a feed's name is its entries' reason) */
export const RESERVED_FEED_NAMES: readonly string[] = ['apiban', 'failures', 'scanner', 'recidive', 'injection', 'manual'];
const LIST_FIELDS = ['name', 'url', 'interval'];

/** blocklists.lists: each entry named, its source usable, its interval a duration; nothing echoed (URLs may hold tokens). */
function validateBlocklists(v: unknown): void {
  if (!Array.isArray(v)) throw new Error('must be a JSON array of {"name", "url", "interval"}');
  const names = new Set<string>();
  v.forEach((item: unknown, i) => {
    const at = `entry ${i + 1}`;
    if (typeof item !== 'object' || item === null || Array.isArray(item))
      throw new Error(`${at} must be an object {"name", "url", "interval"}`);
    const o = item as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!LIST_FIELDS.includes(k)) throw new Error(`${at}: unknown field ${JSON.stringify(k)}${didYouMean(k, LIST_FIELDS)}`);
    }
    if (typeof o['name'] !== 'string' || !FEED_NAME.test(o['name'])) {
      throw new Error(`${at}: name must be 1 to 32 characters from a-z 0-9 _ -, starting with a letter or digit`);
    }
    const name = o['name'];
    if (RESERVED_FEED_NAMES.includes(name))
      throw new Error(`${at}: the name ${name} is taken (${RESERVED_FEED_NAMES.join(', ')} are reserved)`);
    if (names.has(name)) throw new Error(`${at}: the name ${name} is given twice`);
    names.add(name);
    if (typeof o['url'] !== 'string' || !usableSource(o['url'])) {
      throw new Error(`${name}: url must be an http(s):// URL, a file:// URL or an absolute path`);
    }
    if (o['interval'] !== undefined) {
      const ms = parseDuration(o['interval']);
      if (ms === null || ms < 1000) throw new Error(`${name}: interval must be a duration of at least 1s, such as 30m or 4h`);
    }
  });
}

function usableSource(url: string): boolean {
  if (url.startsWith('/')) return true;
  try {
    return ['http:', 'https:', 'file:'].includes(new URL(url).protocol);
  } catch {
    return false;
  }
}
