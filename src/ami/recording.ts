// Recorded AMI sessions (test/fixtures/ami, captures from the field): `.jsonl` with one `{t_ms, conn, raw}` record per
// message, or `.ami` with the raw bytes. Used by the replay server and the `ami-guard replay` dry run.
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { RawMessage } from '../events/types.js';
import { AmiFrameReader } from './frame-reader.js';

export interface RecordedMessage {
  /** ms since the capture started; 0 throughout for `.ami`, which carries no timing */
  readonly tMs: number;
  /** connection number, from 1 */
  readonly conn: number;
  /** exact text as it was on the wire */
  readonly raw: string;
  /** empty for a banner */
  readonly headers: RawMessage;
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
  const reader = new AmiFrameReader();
  const records: RecordedMessage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const record = parseJsonlLine(lines[i] ?? '', `${source}:${i + 1}`, reader);
    if (record) records.push(record);
  }
  return { banner: firstBanner(records), records, dropped: { oversized: 0, trailingBytes: 0 } };
}

/**
 * Raw bytes → messages. Asterisk greets every connection with a banner, so each banner after the first starts a new
 * connection (an `.ami` of asterisk-restart holds two).
 */
export function parseAmiRecording(bytes: Buffer | string): Recording {
  const reader = new AmiFrameReader();
  const records: RecordedMessage[] = [];
  const numberer = connectionNumberer();
  for (const frame of reader.push(bytes)) {
    records.push({ tMs: 0, conn: numberer(frame.banner), raw: frame.raw, headers: frame.headers, banner: frame.banner });
  }
  return {
    banner: firstBanner(records),
    records,
    dropped: { oversized: reader.discarded, trailingBytes: reader.bufferedBytes },
  };
}

/** What asterisk-manager would emit as `managerevent` (a non-empty `Event:` header); banners and replies are not. */
export function isEventMessage(headers: RawMessage): boolean {
  const event = headers['event'];
  return event !== undefined && event !== '';
}

/**
 * The events of a recording in order, streamed from disk without loading the whole file: the message source of the
 * replay dry run. Timing is not reproduced.
 */
export async function* readRecordingEvents(path: string): AsyncGenerator<RawMessage, void, undefined> {
  const kind = recordingKind(path);
  const stream = createReadStream(path);
  try {
    if (kind === 'ami') {
      const reader = new AmiFrameReader();
      for await (const chunk of stream) {
        for (const frame of reader.push(chunk as Buffer)) if (isEventMessage(frame.headers)) yield frame.headers;
      }
      return;
    }
    const reader = new AmiFrameReader();
    let lineNo = 0;
    for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) {
      lineNo++;
      const record = parseJsonlLine(line, `${path}:${lineNo}`, reader);
      if (record && isEventMessage(record.headers)) yield record.headers;
    }
  } finally {
    stream.destroy();
  }
}

function recordingKind(path: string): 'jsonl' | 'ami' {
  if (path.endsWith('.jsonl')) return 'jsonl';
  if (path.endsWith('.ami')) return 'ami';
  throw new Error(`${path}: unknown recording type (expected .jsonl or .ami)`);
}

/** One `.jsonl` line → a record (null for a blank line); throws naming `where` on anything malformed. */
function parseJsonlLine(line: string, where: string, reader: AmiFrameReader): RecordedMessage | null {
  if (line.trim() === '') return null;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new Error(`${where}: not JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where}: expected an object {t_ms, conn, raw}`);
  const { t_ms: tMs, conn, raw } = value as Record<string, unknown>;
  if (typeof tMs !== 'number' || !Number.isFinite(tMs) || tMs < 0) throw new Error(`${where}: t_ms must be a number >= 0`);
  if (typeof conn !== 'number' || !Number.isInteger(conn) || conn < 1) throw new Error(`${where}: conn must be an integer >= 1`);
  if (typeof raw !== 'string' || raw === '') throw new Error(`${where}: raw must be a non-empty string`);
  // The same reader serves every line: after a complete message it holds nothing, so reuse is safe.
  const frames = reader.push(raw);
  const frame = frames[0];
  if (frames.length !== 1 || !frame || frame.raw !== raw || reader.bufferedBytes !== 0 || reader.discarded !== 0) {
    throw new Error(`${where}: raw must hold exactly one complete AMI message (banner line, or headers ending in an empty line)`);
  }
  return { tMs, conn, raw, headers: frame.headers, banner: frame.banner };
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
