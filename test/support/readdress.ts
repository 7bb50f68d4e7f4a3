// Recorded Asterisk events moved to other source addresses: the bytes as a real Asterisk 22 wrote them, with only the
// remote address (RemoteAddress, and the Call-ID in SessionID where it carries it), the family of the address lines
// and EventTV changed. For attacks the recordings do not hold: thousands of addresses of one /64, a /24 of hosts.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { FIXTURES } from './bed.js';

interface Recorded {
  readonly t_ms: number;
  readonly conn: number;
  readonly raw: string;
}

function recording(scenario: string): Recorded[] {
  return readFileSync(join(FIXTURES, `${scenario}.jsonl`), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Recorded);
}

const REMOTE = /\r\nRemoteAddress: IPV[46]\/([A-Z]+)\/([0-9a-fA-F:.]+)\/(\d+)\r\n/;
const EVENT_TV = /\r\nEventTV: (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3})\+0000\r\n/;

/** The raw events of a recording sent from `from` (its RemoteAddress), in order, optionally of one kind. */
export function eventsFrom(scenario: string, from: string, kind?: string): string[] {
  return recording(scenario)
    .map((r) => r.raw)
    .filter((raw) => REMOTE.exec(raw)?.[2] === from && (!kind || raw.startsWith(`Event: ${kind}\r\n`)));
}

/**
 * `raw` as if sent from `to`: the remote address (wherever the recorded one appears: RemoteAddress, a Call-ID),
 * both address lines in `to`'s family (the PBX's side becomes fd00::1 or 198.18.0.1, as in the lab), and EventTV
 * moved on by `shiftMs` (distinct guesses are milliseconds apart; the same time and session would be one request).
 */
export function readdress(raw: string, to: string, shiftMs = 0): string {
  const m = REMOTE.exec(raw);
  if (!m) throw new Error('not a security event with a RemoteAddress');
  const from = m[2]!;
  const v6 = to.includes(':');
  let out = raw.split(from).join(to);
  out = out.replace(
    /\r\nLocalAddress: IPV[46]\/([A-Z]+)\/[0-9a-fA-F:.]+\/(\d+)\r\n/,
    (_, transport: string, port: string) =>
      `\r\nLocalAddress: ${v6 ? 'IPV6' : 'IPV4'}/${transport}/${v6 ? 'fd00::1' : '198.18.0.1'}/${port}\r\n`,
  );
  out = out.replace(/\r\nRemoteAddress: IPV[46]\//, `\r\nRemoteAddress: ${v6 ? 'IPV6' : 'IPV4'}/`);
  if (shiftMs !== 0) {
    out = out.replace(
      EVENT_TV,
      (_, tv: string) => `\r\nEventTV: ${new Date(Date.parse(`${tv}Z`) + shiftMs).toISOString().slice(0, 23)}+0000\r\n`,
    );
  }
  return out;
}

/** A recording (.jsonl, as the replay server plays it) of `scenario` with `from`'s events sent from `to`. */
export function readdressedRecording(scenario: string, from: string, to: string): string {
  const file = join(tmpdir(), `ag-readdressed-${randomBytes(4).toString('hex')}.jsonl`);
  const lines = recording(scenario).map((r) =>
    JSON.stringify({ ...r, raw: REMOTE.exec(r.raw)?.[2] === from ? readdress(r.raw, to) : r.raw }),
  );
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

/** The address of the `i`-th host (from 1) of an IPv6 /64 written `2001:db8:aa:1::` */
export function hostOf(prefix64: string, i: number): string {
  return `${prefix64}${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}`;
}
