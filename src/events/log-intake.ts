// Asterisk's security log (or messages.log, which holds the same SECURITY lines among others) in, batches of
// security events and injection reports out: the IntakeBatch the AMI intake makes, so `replay` decides on a log
// exactly as on an AMI recording.
//
// The log is read a line at a time, bounded: a line is split on LF only, and a line over MAX_LINE_BYTES is dropped up
// to its LF and counted. A record is a line that starts as Asterisk starts one (`[date] LEVEL[thread]…`) and the lines
// after it that do not: a line break inside a value (pjsip un-escapes `%0A` in the From user into AccountID) starts a
// line of its own, and that line belongs to the record it broke. Asterisk ends every complete record with the closing
// quote of its last value, after its LocalAddress and RemoteAddress; while the record read so far does not, the next
// line belongs to it too, whatever it looks like: a record cut off by an injected line break cannot have its rest
// hidden behind a forged date. Lines that continue a complete record, or none, are reported as a fragment.
import { readSecurityRecord } from './security-log.js';
import type { IntakeBatch } from './intake.js';
import type { InvalidReason } from './normalise.js';
import type { Injection, SecurityEvent } from './types.js';

export const MAX_LINE_BYTES = 64 * 1024;
/** lines and bytes of one record: Asterisk writes at most 8 KiB per message; an injected one may hold a few breaks */
export const MAX_RECORD_LINES = 16;
export const MAX_RECORD_BYTES = 64 * 1024;

const LF = 0x0a;
/** `[date] ` then a level and thread: how every line of Asterisk's logger starts (the `default` and `plain` formats) */
const LOG_LINE = /^\[[^\]\r\n]{1,64}\] /;
/** a SECURITY line: `SECURITY[thread]`, the call id if any, the file (and, in the plain format, line and function) */
/** Asterisk writes these two one after the other in every record, their values never holding a quote */
const ADDRESSES = /",LocalAddress="[^"]*",RemoteAddress="/;
const SECURITY_LINE = /^\[[^\]\r\n]{1,64}\] SECURITY\[\d{1,10}\](?:\[C-[0-9A-Fa-f]{8}\])?:? [^"\r\n]{1,200}?: (?=SecurityEvent=")/;

export interface LogIntakeCounters {
  /** lines read */
  lines: number;
  /** well-formed security events */
  events: number;
  /** records of other levels (NOTICE, VERBOSE, the logger's own header line) */
  other: number;
  readonly invalid: Record<InvalidReason, number>;
  /** records that carried fields Asterisk did not write, and lines that belong to no record */
  injected: number;
  /** lines over MAX_LINE_BYTES, and records over MAX_RECORD_LINES or MAX_RECORD_BYTES */
  oversized: number;
  /** a last line without LF, not read */
  unterminated: number;
}

interface OpenRecord {
  /**
   * `security`: a SECURITY record, its message in `text`; `other`: a record of another level (its continuation lines
   * are its own: a multi-line NOTICE); `orphan`: lines that continue no record; `dropped`: past a bound, skipped
   */
  kind: 'security' | 'other' | 'orphan' | 'dropped';
  /** from `SecurityEvent="` on, continuation lines joined with LF */
  text: string;
  lines: number;
  bytes: number;
}

export class SecurityLogIntake {
  readonly counters: LogIntakeCounters = {
    lines: 0,
    events: 0,
    other: 0,
    invalid: { 'bad-kind': 0, 'bad-address': 0, 'bad-value': 0 },
    injected: 0,
    oversized: 0,
    unterminated: 0,
  };
  private events: SecurityEvent[] = [];
  private injections: Injection[] = [];
  private record: OpenRecord | null = null;
  /** the start of a line begun in an earlier chunk */
  private pieces: Buffer[] = [];
  private pendingBytes = 0;
  /** dropping an oversized line up to its LF */
  private skipping = false;
  /** the clock for reports that carry no EventTV of their own: the last one seen */
  private clock = 0;

  constructor(private readonly onBatch: (batch: IntakeBatch) => void) {}

  /** Reads one chunk of the log; hands over what its complete records held. */
  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const lf = chunk.indexOf(LF, pos);
      const end = lf === -1 ? chunk.length : lf;
      if (this.skipping) {
        if (lf !== -1) this.skipping = false;
      } else if (this.pendingBytes + (end - pos) > MAX_LINE_BYTES) {
        this.pieces = [];
        this.pendingBytes = 0;
        this.skipping = lf === -1;
        this.oversizedLine();
      } else if (lf === -1) {
        this.pieces.push(Buffer.from(chunk.subarray(pos)));
        this.pendingBytes += chunk.length - pos;
      } else if (this.pieces.length > 0) {
        this.pieces.push(chunk.subarray(pos, lf));
        const line = Buffer.concat(this.pieces, this.pendingBytes + (lf - pos)).toString('utf8');
        this.pieces = [];
        this.pendingBytes = 0;
        this.line(line);
      } else {
        this.line(chunk.toString('utf8', pos, lf));
      }
      pos = lf === -1 ? chunk.length : lf + 1;
    }
    this.flush();
  }

  /**
   * The end of the log: the open record ends. A last line without its LF is left out: Asterisk is still writing it
   * (a log read while it grows), and half a line would read as the broken rest of the record before it.
   */
  end(): void {
    if (this.pieces.length > 0 && !this.skipping) this.counters.unterminated++;
    this.pieces = [];
    this.pendingBytes = 0;
    this.skipping = false;
    this.close();
    this.flush();
  }

  private line(text: string): void {
    this.counters.lines++;
    const r = this.record;
    const cutOff = this.cutOff();
    if (!cutOff && LOG_LINE.test(text)) {
      this.close();
      const m = SECURITY_LINE.exec(text);
      this.record = m
        ? { kind: 'security', text: text.slice(m[0].length), lines: 1, bytes: text.length }
        : { kind: 'other', text: '', lines: 1, bytes: 0 };
      return;
    }
    if (!r || (r.kind === 'security' && !cutOff)) {
      // Lines that continue no record: the rest of one whose start is not in this log (cut by hand, `tail -n`), or
      // of one whose end was damaged (a line Asterisk cut at 8 KiB): reported, and the record before them stands.
      this.close();
      this.counters.injected++;
      this.injections.push({ source: null, kind: '', account: '', sign: 'fragment', receivedAt: this.clock });
      this.record = { kind: 'orphan', text: '', lines: 1, bytes: 0 };
      return;
    }
    if (r.kind !== 'security') return;
    r.lines++;
    r.bytes += text.length + 1;
    if (r.lines > MAX_RECORD_LINES || r.bytes > MAX_RECORD_BYTES) return this.drop();
    r.text += `\n${text}`;
  }

  /**
   * The open record is a security record cut off before its end: its last value is not closed, or its LocalAddress
   * and RemoteAddress (which every record has, one after the other) have not come yet.
   */
  private cutOff(): boolean {
    const r = this.record;
    return r !== null && r.kind === 'security' && (!r.text.endsWith('"') || !ADDRESSES.test(r.text));
  }

  /** A line too long to read: it ends a record cut off (which then cannot be read whole), or starts one dropped. */
  private oversizedLine(): void {
    this.counters.lines++;
    if (this.cutOff()) return this.drop();
    this.close();
    this.counters.oversized++;
    this.record = { kind: 'dropped', text: '', lines: 1, bytes: 0 };
  }

  /**
   * The open record went past its bounds: some of its lines are not read, and they may have held Asterisk's own
   * fields, so its source cannot be told; it and the lines that continue it are dropped.
   */
  private drop(): void {
    this.counters.oversized++;
    this.counters.injected++;
    this.injections.push({ source: null, kind: '', account: '', sign: 'cut-short', receivedAt: this.clock });
    this.record = { kind: 'dropped', text: '', lines: 1, bytes: 0 };
  }

  private close(): void {
    const r = this.record;
    this.record = null;
    if (!r || r.kind === 'orphan' || r.kind === 'dropped') return;
    if (r.kind === 'other') {
      this.counters.other++;
      return;
    }
    const reading = readSecurityRecord(r.text);
    switch (reading.type) {
      case 'event':
        this.counters.events++;
        this.clock = Math.max(this.clock, reading.event.eventTime ?? this.clock);
        // a batch is decided events first, injections after: an event after an injection goes in the next one
        if (this.injections.length > 0) this.flush();
        this.events.push(reading.event);
        return;
      case 'broken':
        this.counters.injected++;
        this.clock = Math.max(this.clock, reading.eventTime ?? this.clock);
        this.injections.push({
          source: reading.source,
          kind: reading.kind,
          account: reading.account,
          sign: reading.sign,
          receivedAt: this.clock,
        });
        return;
      case 'invalid':
        this.counters.invalid[reading.reason]++;
        return;
    }
  }

  private flush(): void {
    if (this.events.length === 0 && this.injections.length === 0) return;
    const batch = { events: this.events, injections: this.injections };
    this.events = [];
    this.injections = [];
    this.onBatch(batch);
  }
}
