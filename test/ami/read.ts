// Reads bytes through the frame reader and keeps what each frame held, for tests (the reader's views are valid only
// during its callback).
import { AmiFrameReader, frameText, lineText, type FrameReaderOptions } from '../../src/ami/frame-reader.js';

export interface ReadFrame {
  readonly raw: string;
  readonly banner: boolean;
  /** each line as latin1 text */
  readonly lines: readonly string[];
}

export function readAll(chunks: Iterable<Buffer | string>, options?: FrameReaderOptions): { frames: ReadFrame[]; reader: AmiFrameReader } {
  const frames: ReadFrame[] = [];
  const reader = new AmiFrameReader((f) => {
    frames.push({ raw: frameText(f), banner: f.banner, lines: Array.from({ length: f.lines }, (_, i) => lineText(f, i)) });
  }, options);
  for (const c of chunks) reader.push(typeof c === 'string' ? Buffer.from(c, 'utf8') : c);
  return { frames, reader };
}

export function raws(chunks: Iterable<Buffer | string>, options?: FrameReaderOptions): string[] {
  return readAll(chunks, options).frames.map((f) => f.raw);
}
