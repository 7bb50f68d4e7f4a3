// The control socket's protocol: the CLI on the PBX asks the running daemon over a Unix socket. One request per
// connection, one line of JSON (at most MAX_REQUEST_BYTES); the daemon answers with zero or more `{"page":[…]}` lines
// (a listing, streamed) and one final line, `{"ok":true,"result":…}` or `{"ok":false,"error":…}`, then closes.
// Only root (and the daemon's own user) can connect, but a request is still outside input: parseRequest checks every
// field and builds the targets with the IP parser before anything reaches the store or nft.
import { parseTarget, type IpTarget } from '../net/ip.js';

export const PROTOCOL_VERSION = 1;
/** a request line, newline included */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** targets in one ban or unban request: the CLI sends longer lists (unban --all) in several */
export const MAX_TARGETS = 1_000;
/** characters of a manual ban's note kept */
export const MAX_NOTE = 200;
/** characters of the user name a ban or unban request gives for the audit log */
export const MAX_USER = 64;
/** the longest manual ban: the kernel's own cap on an element's timeout is about 3.17 years */
export const MAX_BAN_MS = 3 * 365 * 86_400_000;
/** records in one page line of a listing */
export const PAGE_SIZE = 500;

export const VERBS = ['status', 'list', 'show', 'ban', 'unban'] as const;
export type Verb = (typeof VERBS)[number];

export type ControlRequest =
  | { readonly verb: 'status' }
  | { readonly verb: 'list' }
  | { readonly verb: 'show'; readonly target: IpTarget }
  /**
   * durationMs null: the daemon's policy.bantime. `user` (here and in unban): who ran the CLI, as it says (only root
   * may connect), for the audit log; '' when not said
   */
  | {
      readonly verb: 'ban';
      readonly targets: readonly IpTarget[];
      readonly durationMs: number | null;
      readonly note: string;
      readonly user: string;
    }
  | { readonly verb: 'unban'; readonly targets: readonly IpTarget[]; readonly user: string };

/** A request the daemon refuses: its message is the answer. `usage` marks a mistake of the caller (exit code 2). */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly usage = true,
  ) {
    super(message);
  }
}

/** The request line as the CLI writes it. */
export function encodeRequest(req: ControlRequest): string {
  const wire: Record<string, unknown> = { v: PROTOCOL_VERSION, verb: req.verb };
  if (req.verb === 'show') wire.target = req.target.text;
  if (req.verb === 'ban' || req.verb === 'unban') {
    wire.targets = req.targets.map((t) => t.text);
    if (req.user) wire.user = req.user;
  }
  if (req.verb === 'ban') {
    if (req.durationMs !== null) wire.durationMs = req.durationMs;
    if (req.note) wire.note = req.note;
  }
  return `${JSON.stringify(wire)}\n`;
}

const FIELDS: Readonly<Record<Verb, readonly string[]>> = {
  status: [],
  list: [],
  show: ['target'],
  ban: ['targets', 'durationMs', 'note', 'user'],
  unban: ['targets', 'user'],
};

/** Parses one request line (without its newline); throws RequestError naming what is wrong. */
export function parseRequest(line: string): ControlRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new RequestError('the request is not JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new RequestError('the request must be a JSON object');
  const r = raw as Record<string, unknown>;
  if (r.v !== PROTOCOL_VERSION) throw new RequestError(`unsupported protocol version (this daemon speaks ${PROTOCOL_VERSION})`);
  const verb = r.verb;
  if (typeof verb !== 'string' || !(VERBS as readonly string[]).includes(verb)) {
    throw new RequestError(`unknown verb: one of ${VERBS.join(', ')}`);
  }
  const allowed = FIELDS[verb as Verb];
  for (const key of Object.keys(r)) {
    if (key !== 'v' && key !== 'verb' && !allowed.includes(key))
      throw new RequestError(`unknown field ${JSON.stringify(key.slice(0, 40))} for ${verb}`);
  }
  switch (verb as Verb) {
    case 'status':
      return { verb: 'status' };
    case 'list':
      return { verb: 'list' };
    case 'show':
      return { verb: 'show', target: target(r.target) };
    case 'unban':
      return { verb: 'unban', targets: targets(r.targets), user: user(r.user) };
    case 'ban': {
      const d = r.durationMs;
      if (d !== undefined && (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 1_000 || d > MAX_BAN_MS)) {
        throw new RequestError(`durationMs must be whole milliseconds from 1000 to ${MAX_BAN_MS}`);
      }
      const note = r.note ?? '';
      if (typeof note !== 'string' || note.length > MAX_NOTE) throw new RequestError(`note must be text of at most ${MAX_NOTE} characters`);
      return { verb: 'ban', targets: targets(r.targets), durationMs: d === undefined ? null : d, note: inert(note), user: user(r.user) };
    }
  }
}

function user(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value !== 'string' || value.length > MAX_USER) throw new RequestError(`user must be text of at most ${MAX_USER} characters`);
  return inert(value);
}

function target(value: unknown): IpTarget {
  const t = typeof value === 'string' ? parseTarget(value) : null;
  if (!t)
    throw new RequestError(
      `invalid address or CIDR network: ${JSON.stringify(typeof value === 'string' ? value.slice(0, 64) : typeof value)}`,
    );
  return t;
}

function targets(value: unknown): IpTarget[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_TARGETS) {
    throw new RequestError(`targets must be a list of 1 to ${MAX_TARGETS} addresses or CIDR networks`);
  }
  return value.map(target);
}

/** an operator's note, made inert: control characters become spaces (it reaches logs, webhooks and terminals) */
export function inert(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, ' ').slice(0, MAX_NOTE);
}

/** The final line of an answer. */
export type ControlAnswer =
  { readonly ok: true; readonly result: unknown } | { readonly ok: false; readonly error: string; readonly usage: boolean };
