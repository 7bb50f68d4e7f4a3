// Frames the AMI byte stream: the live socket, recorded `.ami` files and the replay server all read through here.
//
// Asterisk ends every line with CRLF and every message with an empty line. Lines are split on CRLF only: a bare LF
// or CR is data, because attacker text reaches AMI values unescaped (pjsip un-escapes `%0A` in the SIP From user
// into AccountID), and a parser that also split on LF would let one REGISTER write lines of its own. CRLF itself
// cannot be told apart from Asterisk's, which is why the security-event parser checks every header's place.
//
// Bounded while reading, never after: a message over MAX_FRAME_BYTES, a line over MAX_LINE_BYTES or more than
// MAX_LINES lines is dropped from the point where it crosses the bound up to its empty line, counted, and reading
// goes on with the next message. Each byte is looked at a bounded number of times however the stream is chunked.
//
// Frames are handed to a visitor as a view into the bytes already read (no copy, no header objects); the view is
// valid only during the call. Frames that arrive whole inside one read, which is nearly all of them, are never
// copied; a frame split across reads is gathered once, when its end arrives.

export const MAX_FRAME_BYTES = 64 * 1024;
export const MAX_LINE_BYTES = 8 * 1024;
export const MAX_LINES = 128;

const LF = 0x0a;
const CR = 0x0d;
const BANNER_PREFIX = 'Asterisk Call Manager/';

/** One message, as a view into the bytes read. Offsets index both `text` and `bytes`. */
export interface FrameView {
  /** the bytes as latin1 (one char per byte), for matching keys and ASCII values without decoding */
  text: string;
  /** the same bytes, for decoding a value as UTF-8 */
  bytes: Buffer;
  /** number of lines; the empty line that ends the message is not one of them */
  lines: number;
  /** where line i starts and ends (its CRLF excluded) */
  readonly starts: Int32Array;
  readonly ends: Int32Array;
  /** the greeting line `Asterisk Call Manager/x.y.z`, which has no empty line after it */
  banner: boolean;
}

export type FrameVisitor = (frame: FrameView) => void;

export interface FrameReaderOptions {
  /** bounds, for tests that need small ones; default MAX_FRAME_BYTES, MAX_LINE_BYTES, MAX_LINES */
  maxFrameBytes?: number;
  maxLineBytes?: number;
  maxLines?: number;
  /**
   * Where a greeting may appear: 'first' (a live connection: only as its first line) or 'any' (a recording, where
   * each greeting starts a new connection). Default 'first'.
   */
  banner?: 'first' | 'any';
}

export interface FrameReaderStats {
  /** messages handed to the visitor, greetings included */
  frames: number;
  /** messages dropped for crossing a bound */
  oversized: number;
  /** bytes copied to hold messages split across reads: stays linear in the input however it is chunked */
  copied: number;
}

/** The text of line `i` of a frame (latin1: meaningful for ASCII only). */
export function lineText(f: FrameView, i: number): string {
  return f.text.slice(f.starts[i]!, f.ends[i]!);
}

/** The whole frame as text (UTF-8 decoded), its line ends and closing empty line included: for logs and tests. */
export function frameText(f: FrameView): string {
  if (f.lines === 0) return '';
  const end = f.ends[f.lines - 1]! + (f.banner ? 2 : 4);
  return f.bytes.toString('utf8', f.starts[0]!, end);
}

// scan() results
const COMPLETE = 0;
const INCOMPLETE = 1;
/** a bound was crossed inside the message: skip from this.at to its empty line */
const OVER = 2;
/** the message was whole but over MAX_FRAME_BYTES: reading goes on at this.at */
const DROPPED = 3;

export class AmiFrameReader {
  readonly stats: FrameReaderStats = { frames: 0, oversized: 0, copied: 0 };
  private readonly visit: FrameVisitor;
  private readonly bannerAnywhere: boolean;
  /** a greeting may come next (a new connection, or anywhere in a recording) */
  private bannerPending = true;
  private readonly view: FrameView;
  private readonly maxFrame: number;
  private readonly maxLine: number;
  private readonly maxLines: number;

  // Left by scan(): where the message ended (COMPLETE, DROPPED) or where skipping goes on (OVER); the lines so far
  // and the state of the open line (INCOMPLETE, OVER).
  private at = 0;
  private scanLines = 0;
  // The open line of a pending or skipped message: its bytes so far (a CR included) and whether the last was a CR.
  private lineBytes = 0;
  private lastWasCr = false;

  // A message begun in an earlier read: its pieces, bytes and complete lines so far.
  private pieces: Buffer[] = [];
  private pendingBytes = 0;
  private pendingLines = 0;
  /** dropping an oversized message up to its empty line */
  private skipping = false;

  constructor(visit: FrameVisitor, options: FrameReaderOptions = {}) {
    this.visit = visit;
    this.bannerAnywhere = options.banner === 'any';
    this.maxFrame = bound('maxFrameBytes', options.maxFrameBytes ?? MAX_FRAME_BYTES, 8);
    this.maxLine = bound('maxLineBytes', options.maxLineBytes ?? MAX_LINE_BYTES, 8);
    this.maxLines = bound('maxLines', options.maxLines ?? MAX_LINES, 1);
    this.view = {
      text: '',
      bytes: Buffer.alloc(0),
      lines: 0,
      starts: new Int32Array(this.maxLines),
      ends: new Int32Array(this.maxLines),
      banner: false,
    };
  }

  /** Bytes held for a message not yet complete; never more than the frame bound. */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /** A new connection: what was pending belonged to the old one, and a greeting comes first again. */
  reset(): void {
    this.clearPending();
    this.skipping = false;
    this.bannerPending = true;
  }

  /** Reads one chunk, calling the visitor for every message it completes, in order. */
  push(chunk: Buffer): void {
    let pos = 0;
    while (pos >= 0 && pos < chunk.length) {
      if (this.skipping) pos = this.skipIn(chunk, pos);
      else if (this.pieces.length > 0) pos = this.continuePending(chunk, pos);
      else {
        this.readInPlace(chunk, pos);
        return;
      }
    }
  }

  /** Scans the messages that lie in `buf` from `pos`; keeps an unfinished one for the next read. */
  private readInPlace(buf: Buffer, pos: number): void {
    let text: string | undefined;
    const v = this.view;
    const len = buf.length;
    while (pos < len) {
      // a message starts at pos: an empty line here is a stray one between messages
      if (buf[pos] === CR && pos + 1 < len && buf[pos + 1] === LF) {
        pos += 2;
        continue;
      }
      const r = this.scan(buf, pos, len);
      if (r === COMPLETE) {
        text ??= buf.toString('latin1', 0, len);
        v.text = text;
        v.bytes = buf;
        this.emit();
        pos = this.at;
      } else if (r === DROPPED) {
        this.stats.oversized++;
        pos = this.at;
      } else if (r === INCOMPLETE) {
        this.keepPending(buf, pos);
        return;
      } else {
        this.stats.oversized++;
        this.skipping = true;
        pos = this.skipIn(buf, this.at);
        if (pos < 0) return;
      }
    }
  }

  private emit(): void {
    this.stats.frames++;
    if (!this.bannerAnywhere) this.bannerPending = false;
    this.visit(this.view);
  }

  /** Scans one message of `buf` from `start` (a line start) up to `limit`, filling the view's line table. */
  private scan(buf: Buffer, start: number, limit: number): number {
    const v = this.view;
    let lines = 0;
    let lineStart = start;
    let from = start;
    v.banner = false;
    for (;;) {
      const lf = buf.indexOf(LF, from);
      if (lf === -1 || lf >= limit) {
        this.lineBytes = limit - lineStart;
        this.lastWasCr = limit > lineStart && buf[limit - 1] === CR;
        this.scanLines = lines;
        if (this.lineBytes > this.maxLine + 1 || limit - start > this.maxFrame) {
          this.at = limit;
          return OVER;
        }
        return INCOMPLETE;
      }
      const lineLen = lf - lineStart; // bytes before the LF, a CR included
      const crlf = lineLen > 0 && buf[lf - 1] === CR;
      if (crlf && lineLen === 1) {
        this.at = lf + 1;
        if (lf + 1 - start > this.maxFrame) return DROPPED;
        v.lines = lines;
        return COMPLETE;
      }
      if (lineLen > this.maxLine + 1 || lf + 1 - start > this.maxFrame || (crlf && lines === this.maxLines)) {
        this.at = lf; // skipIn looks at this LF again, knowing the line it ends
        this.lineBytes = lineLen;
        this.lastWasCr = crlf;
        return OVER;
      }
      from = lf + 1;
      if (!crlf) continue; // a bare LF is data
      v.starts[lines] = lineStart;
      v.ends[lines] = lf - 1;
      lines++;
      lineStart = from;
      if (lines === 1 && this.bannerPending && this.isBanner(buf, v.starts[0]!, v.ends[0]!)) {
        v.lines = 1;
        v.banner = true;
        this.at = from;
        return COMPLETE;
      }
    }
  }

  private isBanner(buf: Buffer, start: number, end: number): boolean {
    return end - start > BANNER_PREFIX.length && buf.toString('latin1', start, start + BANNER_PREFIX.length) === BANNER_PREFIX;
  }

  /** An unfinished message at the end of a read: keep a copy (the caller may reuse its buffer) with its scan state. */
  private keepPending(buf: Buffer, start: number): void {
    const piece = Buffer.from(buf.subarray(start));
    this.stats.copied += piece.length;
    this.pieces = [piece];
    this.pendingBytes = piece.length;
    this.pendingLines = this.scanLines; // lineBytes and lastWasCr were left by scan() for the open line
  }

  /**
   * Continues the pending message with `chunk` from `from`, looking only at the new bytes. Returns where the rest
   * of `chunk` starts, or -1 when all of it was used.
   */
  private continuePending(chunk: Buffer, from: number): number {
    const begin = from;
    const len = chunk.length;
    for (;;) {
      const lf = chunk.indexOf(LF, from);
      if (lf === -1) {
        this.lineBytes += len - from;
        this.pendingBytes += len - from;
        this.lastWasCr = chunk[len - 1] === CR;
        if (this.lineBytes > this.maxLine + 1 || this.pendingBytes > this.maxFrame) return this.dropPending(chunk, len);
        this.pieces.push(Buffer.from(chunk.subarray(begin)));
        this.stats.copied += len - begin;
        return -1;
      }
      const crlf = lf > from ? chunk[lf - 1] === CR : this.lastWasCr;
      const lineLen = this.lineBytes + (lf - from); // bytes of the line before its LF, a CR included
      this.pendingBytes += lf + 1 - from;
      this.lastWasCr = false;
      from = lf + 1;
      if (crlf && lineLen === 1) return this.completePending(chunk, begin, from);
      if (this.pendingBytes > this.maxFrame || lineLen > this.maxLine + 1) {
        this.lineBytes = lineLen;
        this.lastWasCr = crlf;
        return this.dropPending(chunk, lf);
      }
      if (!crlf) {
        this.lineBytes = lineLen + 1;
        continue;
      }
      this.lineBytes = 0;
      this.pendingLines++;
      // a greeting has no empty line after it: its own line end completes it
      if (this.pendingLines === 1 && this.bannerPending) return this.completePending(chunk, begin, from);
      if (this.pendingLines > this.maxLines) return this.dropPending(chunk, from);
    }
  }

  /** The pending bytes plus `chunk[begin, end)` are ready to read: gather them once and read them in place. */
  private completePending(chunk: Buffer, begin: number, end: number): number {
    this.pieces.push(chunk.subarray(begin, end));
    const whole = Buffer.concat(this.pieces, this.pendingBytes);
    this.stats.copied += whole.length;
    this.clearPending();
    this.readInPlace(whole, 0); // may leave a message pending again (a first line that was no greeting)
    return end;
  }

  /** The pending message crossed a bound at `at` in `chunk`: drop it and skip on to its empty line. */
  private dropPending(chunk: Buffer, at: number): number {
    const { lineBytes, lastWasCr } = this;
    this.clearPending();
    this.lineBytes = lineBytes;
    this.lastWasCr = lastWasCr;
    this.stats.oversized++;
    this.skipping = true;
    return at >= chunk.length ? -1 : this.skipIn(chunk, at);
  }

  /**
   * While skipping: finds the empty line that ends the dropped message, looking at each byte from `from` once.
   * Returns the offset after it, or -1 when the chunk ends first.
   */
  private skipIn(chunk: Buffer, from: number): number {
    const len = chunk.length;
    for (;;) {
      const lf = chunk.indexOf(LF, from);
      if (lf === -1) {
        if (len > from) {
          this.lineBytes = Math.min(3, this.lineBytes + (len - from));
          this.lastWasCr = chunk[len - 1] === CR;
        }
        return -1;
      }
      const crlf = lf > from ? chunk[lf - 1] === CR : this.lastWasCr;
      const lineLen = Math.min(3, this.lineBytes + (lf - from));
      this.lastWasCr = false;
      from = lf + 1;
      if (crlf && lineLen === 1) {
        this.skipping = false;
        this.lineBytes = 0;
        return from;
      }
      this.lineBytes = crlf ? 0 : lineLen + 1;
    }
  }

  private clearPending(): void {
    this.pieces = [];
    this.pendingBytes = 0;
    this.pendingLines = 0;
    this.lineBytes = 0;
    this.lastWasCr = false;
  }
}

function bound(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${value}`);
  return value;
}
