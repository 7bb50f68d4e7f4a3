// Headers of a message as a plain map, for the few messages that are not security events: action replies (the AMI
// client), actions (the test server), recordings shown to people. Security events never go through here: the
// event parser reads them in place and checks each header's position (events/normalise.ts).
import type { FrameView } from './frame-reader.js';

/** Header name (lower-cased, trimmed) → values in order. A map, so a header named `__proto__` is only data. */
export type Headers = ReadonlyMap<string, readonly string[]>;

/** Splits each line on its first `: ` (a line without one is all name, value ''); values decoded as UTF-8. */
export function headersOf(f: FrameView): Headers {
  const out = new Map<string, string[]>();
  for (let i = 0; i < f.lines; i++) {
    const s = f.starts[i]!;
    const e = f.ends[i]!;
    const c = f.text.indexOf(': ', s);
    const colon = c === -1 || c + 2 > e ? -1 : c;
    const key = (colon === -1 ? f.text.slice(s, e) : f.text.slice(s, colon)).trim().toLowerCase();
    const value = colon === -1 ? '' : f.bytes.toString('utf8', colon + 2, e);
    const list = out.get(key);
    if (list) list.push(value);
    else out.set(key, [value]);
  }
  return out;
}

/** The first value of a header, or '' */
export function header(h: Headers, name: string): string {
  return h.get(name)?.[0] ?? '';
}

/**
 * An action as bytes. Values may not hold CR or LF: they would end the line and let the text write headers of its
 * own (the secret comes from configuration, but a typo with a newline must fail loudly, not log in oddly).
 */
export function formatAction(fields: ReadonlyArray<readonly [string, string]>): string {
  let out = '';
  for (const [k, v] of fields) {
    if (/[\r\n]/.test(k) || /[\r\n]/.test(v)) throw new Error(`AMI action field ${k} holds a line break`);
    out += `${k}: ${v}\r\n`;
  }
  return `${out}\r\n`;
}

/** Whether a frame is an action's reply (`Response:` first). */
export function isReply(f: FrameView): boolean {
  return !f.banner && f.lines > 0 && f.text.startsWith('Response: ', f.starts[0]!);
}

/**
 * In a recording, the recorder's own replies: a `Response:` frame with an `ActionID:` line. The live client matches
 * its random ActionIDs exactly; a recording keeps no list of them, but a reply forged through a SIP From user has no
 * room for an ActionID line (pjsip keeps 36 bytes of it), so this tells the two apart there.
 */
export function isRecordedReply(f: FrameView): boolean {
  if (!isReply(f)) return false;
  for (let i = 1; i < f.lines; i++) if (f.text.startsWith('ActionID: ', f.starts[i]!)) return true;
  return false;
}
