// The synthetic attack stream: one real recorded event, byte for byte, with only the source address varied.
//
// The template is the pjsip ChallengeResponseFailed of test/fixtures/ami/legit-phone.jsonl (a phone mistyping its
// password, captured from a real Asterisk 22). Every occurrence of the recorded source address (RemoteAddress and
// the SIP Call-ID in SessionID) is replaced, and EventTV moves on by 1 ms per event (the k-th event of a stream is
// stamped recorded time + k ms, in the recorded format): the daemon counts a failure repeating the session and the
// time of the previous one from its address as the same request (as pjsip reports one REGISTER twice), while
// svcrack's guesses are milliseconds apart. Every other byte stays as recorded. The same event was captured in
// Asterisk's security log (bench/fixtures/legit-phone.security.log, copied byte for byte from the shared fixtures),
// which gives the fail2ban line of the very same event.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { attacker } from './util.js';

export const REPO = process.cwd();
export const AMI_RECORDING = join(REPO, 'test/fixtures/ami/legit-phone.jsonl');
export const SECURITY_LOG = join(REPO, 'bench/fixtures/legit-phone.security.log');
/** the kind the template is */
export const KIND = 'ChallengeResponseFailed';

/** A text with the recorded source address cut out: parts.join(address) rebuilds it. */
export interface Template {
  readonly parts: readonly string[];
  /** the address as recorded */
  readonly recordedAddress: string;
  /** EventTV as recorded (`2026-11-21T19:16:38.958+0000`) and as ms since the epoch */
  readonly recordedTv: string;
  readonly recordedTvMs: number;
  /** the log line's own `[2026-11-21 19:16:38]` stamp, if the template has one */
  readonly recordedStamp: string | null;
}

const EVENT_TV = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000/;
const STAMP = /^\[(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\]/;

function cut(text: string, address: string): Template {
  const parts = text.split(address);
  if (parts.length < 2) throw new Error(`template does not contain ${address}`);
  const tv = EVENT_TV.exec(text)?.[0];
  if (!tv) throw new Error('template has no EventTV');
  return {
    parts,
    recordedAddress: address,
    recordedTv: tv,
    recordedTvMs: Date.parse(tv.replace('+0000', 'Z')),
    recordedStamp: STAMP.exec(text)?.[1] ?? null,
  };
}

/** The recorded AMI event (raw bytes as on the wire, ending in the blank line). */
export function amiTemplate(): Template {
  for (const line of readFileSync(AMI_RECORDING, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const { raw } = JSON.parse(line) as { raw: string };
    if (raw.startsWith(`Event: ${KIND}\r\n`)) {
      const m = /\r\nRemoteAddress: IPV4\/UDP\/([0-9.]+)\/\d+\r\n/.exec(raw);
      if (!m) throw new Error('no RemoteAddress in the template event');
      return cut(raw, m[1]!);
    }
  }
  throw new Error(`no ${KIND} event in ${AMI_RECORDING}`);
}

/** The same event's line in Asterisk's security log, without its line end. */
export function securityLogTemplate(): Template {
  for (const line of readFileSync(SECURITY_LOG, 'utf8').split('\n')) {
    if (line.includes(`SecurityEvent="${KIND}"`)) {
      const m = /RemoteAddress="IPV4\/UDP\/([0-9.]+)\/\d+"/.exec(line);
      if (!m) throw new Error('no RemoteAddress in the template log line');
      return cut(line, m[1]!);
    }
  }
  throw new Error(`no ${KIND} line in ${SECURITY_LOG}`);
}

/**
 * The template with an address, as the `seq`-th event of its stream (EventTV = recorded + seq ms, and the log line's
 * stamp with it); an IPv6 address also turns `IPV4/` into `IPV6/` as Asterisk writes it.
 */
export function render(t: Template, address: string, seq: number): string {
  const iso = new Date(t.recordedTvMs + seq).toISOString(); // 2026-11-21T19:16:38.958Z
  let text = t.parts.join(address).replace(t.recordedTv, `${iso.slice(0, 23)}+0000`);
  if (t.recordedStamp) text = text.replace(`[${t.recordedStamp}]`, `[${iso.slice(0, 10)} ${iso.slice(11, 19)}]`);
  return address.includes(':') ? text.replaceAll(`IPV4/UDP/${address}/`, `IPV6/UDP/${address}/`) : text;
}

/** A running event number for streams written piecemeal (latency, fleet, markers): each event gets its own EventTV. */
let sequence = 0;
export function nextSeq(): number {
  return sequence++;
}

export interface StreamShape {
  /** events in the stream */
  readonly events: number;
  /** distinct source addresses, interleaved round-robin: event k comes from attacker(k % addresses) */
  readonly addresses: number;
}

/** Address of the k-th event: round-robin, so every address gets events/addresses events spread over the run. */
export function addressOf(shape: StreamShape, k: number): string {
  return attacker(k % shape.addresses);
}

/**
 * The stream as buffers of whole events, about `chunkBytes` each (so a reply written between two chunks never lands
 * inside an event). Addresses are rendered once and reused.
 */
export function buildAmiStream(shape: StreamShape, chunkBytes = 256 * 1024): { chunks: Buffer[]; bytes: number } {
  const t = amiTemplate();
  const chunks: Buffer[] = [];
  let bytes = 0;
  let parts: string[] = [];
  let partBytes = 0;
  for (let k = 0; k < shape.events; k++) {
    const ev = render(t, attacker(k % shape.addresses), k);
    parts.push(ev);
    partBytes += ev.length; // ASCII: one byte per character
    if (partBytes >= chunkBytes) {
      const b = Buffer.from(parts.join(''), 'latin1');
      chunks.push(b);
      bytes += b.length;
      parts = [];
      partBytes = 0;
    }
  }
  if (parts.length > 0) {
    const b = Buffer.from(parts.join(''), 'latin1');
    chunks.push(b);
    bytes += b.length;
  }
  return { chunks, bytes };
}

/** `count` events from one address, each with its own EventTV (e.g. maxretry events that ban a marker). */
export function eventsFrom(address: string, count: number): Buffer {
  const t = amiTemplate();
  let out = '';
  for (let i = 0; i < count; i++) out += render(t, address, 10_000_000 + nextSeq());
  return Buffer.from(out, 'latin1');
}
