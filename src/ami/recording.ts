// Recorded AMI sessions (test/fixtures/ami, captures from the field, `ami-guard record`): `.jsonl` with one
// `{t_ms, conn, raw}` record per message, or `.ami` with the raw bytes. Read through the same frame reader as the live
// socket, so a replay sees exactly what the daemon would; written here too, by `ami-guard record`.
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { AmiFrameReader, frameText, type FrameView } from './frame-reader.js';
import { headersOf, type Headers } from './message.js';

export interface RecordedMessage {
  /** ms since the capture started; 0 throughout for `.ami`, which carries no timing */
  readonly tMs: number;
  /** connection number, from 1 */
  readonly conn: number;
  /** exact text as it was on the wire */
  readonly raw: string;
  /** empty for a banner */
  readonly headers: Headers;
  readonly banner: boolean;
}

export interface Recording {
  /** the first banner without its line end, e.g. `Asterisk Call Manager/11.0.0`; null if there is none */
  readonly banner: string | null;
  readonly records: readonly RecordedMessage[];
  /** `.ami` only: bytes skipped (oversized messages, an unfinished message at the end of the file) */
  readonly dropped: { readonly oversized: number; readonly trailingBytes: number };
}

export async function loadRecording(path: string): Promise<Recording> {
  const kind = recordingKind(path);
  const data = await readFile(path);
  return kind === 'jsonl' ? parseJsonlRecording(data.toString('utf8'), path) : parseAmiRecording(data);
}

/** `source` names the file in error messages. */
export function parseJsonlRecording(text: string, source = 'recording'): Recording {
  const records: RecordedMessage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const record = parseJsonlLine(lines[i] ?? '', `${source}:${i + 1}`);
    if (record) records.push(record);
  }
  return { banner: firstBanner(records), records, dropped: { oversized: 0, trailingBytes: 0 } };
}

/**
 * Raw bytes → messages. Asterisk greets every connection with a banner, so each banner after the first starts a new
 * connection (an `.ami` of asterisk-restart holds two).
 */
export function parseAmiRecording(bytes: Buffer | string): Recording {
  const records: RecordedMessage[] = [];
  const numberer = connectionNumberer();
  const reader = new AmiFrameReader(
    (f) => {
      records.push({ tMs: 0, conn: numberer(f.banner), raw: frameText(f), headers: f.banner ? new Map() : headersOf(f), banner: f.banner });
    },
    { banner: 'any' },
  );
  reader.push(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes);
  return { banner: firstBanner(records), records, dropped: { oversized: reader.stats.oversized, trailingBytes: reader.bufferedBytes } };
}

/**
 * Streams a recording's messages from disk, in order, without loading the whole file: the source of the replay dry
 * run. `visit` gets every message as a frame view (valid during the call); after each read of the file `settle` is
 * awaited, so a slow consumer holds the reading instead of piling up what was read. `connection` is called when a
 * new connection begins (a greeting after the first). Timing is not reproduced.
 */
export async function readRecording(
  path: string,
  visit: (f: FrameView) => void,
  settle: () => Promise<void> = () => Promise.resolve(),
  connection: (conn: number) => void = () => undefined,
): Promise<void> {
  const kind = recordingKind(path);
  const numberer = connectionNumberer();
  let conn = 0;
  const reader = new AmiFrameReader(
    (f) => {
      const c = numberer(f.banner);
      if (c !== conn) connection((conn = c));
      visit(f);
    },
    { banner: 'any' },
  );
  const stream = createReadStream(path);
  try {
    if (kind === 'ami') {
      for await (const chunk of stream) {
        reader.push(chunk as Buffer);
        await settle();
      }
      return;
    }
    let lineNo = 0;
    for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) {
      lineNo++;
      const raw = jsonlRaw(line, `${path}:${lineNo}`);
      if (raw === null) continue;
      reader.push(Buffer.from(raw, 'utf8'));
      await settle();
    }
  } finally {
    stream.destroy();
  }
}

/**
 * One message as a recording holds it: a `.jsonl` line `{"t_ms": …, "conn": …, "raw": …}` (as the fixtures are
 * written; raw is decoded as UTF-8, so an invalid byte becomes U+FFFD), or for `.ami` the message's exact bytes.
 */
export function recordOf(kind: 'jsonl' | 'ami', f: FrameView, tMs: number, conn: number): Buffer | string {
  if (kind === 'jsonl') return `{"t_ms": ${Math.round(tMs)}, "conn": ${conn}, "raw": ${JSON.stringify(frameText(f))}}\n`;
  const end = f.ends[f.lines - 1]! + (f.banner ? 2 : 4);
  return Buffer.from(f.bytes.subarray(f.starts[0]!, end)); // a copy: the view's bytes are the reader's
}

export function recordingKind(path: string): 'jsonl' | 'ami' {
  if (path.endsWith('.jsonl')) return 'jsonl';
  if (path.endsWith('.ami')) return 'ami';
  throw new Error(`${path}: unknown recording type (expected .jsonl or .ami)`);
}

interface JsonlRecord {
  readonly tMs: number;
  readonly conn: number;
  readonly raw: string;
}

/** One `.jsonl` line's fields, checked (null for a blank line); throws naming `where` on anything malformed. */
function jsonlRecord(line: string, where: string): JsonlRecord | null {
  if (line.trim() === '') return null;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new Error(`${where}: not JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new Error(`${where}: expected an object {t_ms, conn, raw}`);
  const { t_ms: tMs, conn, raw } = value as Record<string, unknown>;
  if (typeof tMs !== 'number' || !Number.isFinite(tMs) || tMs < 0) throw new Error(`${where}: t_ms must be a number >= 0`);
  if (typeof conn !== 'number' || !Number.isInteger(conn) || conn < 1) throw new Error(`${where}: conn must be an integer >= 1`);
  if (typeof raw !== 'string' || raw === '') throw new Error(`${where}: raw must be a non-empty string`);
  return { tMs, conn, raw };
}

function jsonlRaw(line: string, where: string): string | null {
  return jsonlRecord(line, where)?.raw ?? null;
}

/** One `.jsonl` line → a record: its raw text must be exactly one complete message. */
function parseJsonlLine(line: string, where: string): RecordedMessage | null {
  const r = jsonlRecord(line, where);
  if (!r) return null;
  const frames: RecordedMessage[] = [];
  const reader = new AmiFrameReader(
    (f) => {
      frames.push({ tMs: r.tMs, conn: r.conn, raw: frameText(f), headers: f.banner ? new Map() : headersOf(f), banner: f.banner });
    },
    { banner: 'any' },
  );
  reader.push(Buffer.from(r.raw, 'utf8'));
  const frame = frames[0];
  if (frames.length !== 1 || !frame || frame.raw !== r.raw || reader.bufferedBytes !== 0 || reader.stats.oversized !== 0) {
    throw new Error(`${where}: raw must hold exactly one complete AMI message (banner line, or headers ending in an empty line)`);
  }
  return frame;
}

function firstBanner(records: readonly RecordedMessage[]): string | null {
  const b = records.find((r) => r.banner);
  return b ? b.raw.replace(/\r?\n$/, '') : null;
}

function connectionNumberer(): (banner: boolean) => number {
  let conn = 1;
  let seenBanner = false;
  return (banner) => {
    if (banner) {
      if (seenBanner) conn++;
      seenBanner = true;
    }
    return conn;
  };
}
