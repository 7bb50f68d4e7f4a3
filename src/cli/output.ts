// Shared output helpers: durations for people, fixed-width tables that fit 80 columns, and JSON arrays written a
// row at a time so a listing of 100k bans never sits in memory as one string.
import { formatDuration } from '../config/duration.js';

export function age(ms: number, now: number): string {
  return formatDuration(Math.max(0, now - ms));
}

export function ago(ms: number, now: number): string {
  return `${age(ms, now)} ago`;
}

export function left(until: number, now: number): string {
  return formatDuration(Math.max(0, until - now));
}

export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

export interface Column {
  readonly title: string;
  readonly width: number;
}

export class Table {
  constructor(
    private readonly columns: readonly Column[],
    private readonly out: NodeJS.WritableStream = process.stdout,
  ) {}

  header(): void {
    this.row(this.columns.map((c) => c.title));
  }

  row(cells: readonly string[]): void {
    const line = cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(this.columns[i]?.width ?? cell.length)))
      .join('  ');
    this.out.write(`${line.trimEnd()}\n`);
  }
}

export class JsonArrayWriter {
  private first = true;

  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {
    this.out.write('[');
  }

  push(item: unknown): void {
    this.out.write(`${this.first ? '\n' : ',\n'}${JSON.stringify(item)}`);
    this.first = false;
  }

  end(): void {
    this.out.write(this.first ? ']\n' : '\n]\n');
  }
}

/** Writes to stdout and resolves once the data is handed to the OS (so process.exit cannot cut it off). */
export function print(text: string): Promise<void> {
  return new Promise((resolve) => {
    if (process.stdout.write(text)) resolve();
    else process.stdout.once('drain', () => resolve());
  });
}
