// Shared output helpers: durations and ages for people, tables whose columns fit what they hold, JSON with times in
// ISO 8601, and text from Redis made safe for a terminal.
import { formatDuration } from '../config/duration.js';
import { escapeControl } from '../log.js';

/** Whole seconds and up, never rounded up: `0s` for a ban made this instant, `59m59s` for 59m59.5s. */
function forPeople(ms: number): string {
  return ms < 1000 ? '0s' : formatDuration(ms);
}

/** How long ago `ms` was: `2m10s`. */
export function age(ms: number, now: number): string {
  return forPeople(Math.max(0, now - ms));
}

export function ago(ms: number, now: number): string {
  return `${age(ms, now)} ago`;
}

/** Time left until `until`, rounded down. */
export function left(until: number, now: number): string {
  return forPeople(Math.max(0, until - now));
}

export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** Text that came from Redis (a node name, a note, an account id) as it may reach a terminal. */
export const printable = escapeControl;

// JSON.stringify escapes C0 controls but leaves C1 controls, line separators and bidi overrides as they are
const UNESCAPED_BY_JSON = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** JSON text safe to print on a terminal: every control character escaped, still valid JSON. */
export function jsonText(value: unknown): string {
  return JSON.stringify(value).replace(UNESCAPED_BY_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export interface Column {
  readonly title: string;
  readonly width: number;
}

/** Fixed-width columns, printed a row at a time (for output that streams and whose widths are known). */
export class Table {
  constructor(
    private readonly columns: readonly Column[],
    private readonly out: NodeJS.WritableStream = process.stdout,
  ) {}

  header(): void {
    this.row(this.columns.map((c) => c.title));
  }

  row(cells: readonly string[]): void {
    const line = cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(this.columns[i]?.width ?? cell.length))).join('  ');
    this.out.write(`${line.trimEnd()}\n`);
  }
}

/**
 * A table whose columns are as wide as their widest cell (titles included), so a full IPv6 address or a long node
 * name never pushes the next column out of line. Cells are escaped for the terminal.
 */
export function renderTable(titles: readonly string[], rows: readonly (readonly string[])[]): string {
  const cells = rows.map((r) => r.map((c) => printable(c)));
  const widths = titles.map((t, i) => Math.max(t.length, ...cells.map((r) => r[i]?.length ?? 0)));
  const line = (r: readonly string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return `${[line(titles), ...cells.map(line)].join('\n')}\n`;
}

export class JsonArrayWriter {
  private first = true;

  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {
    this.out.write('[');
  }

  push(item: unknown): void {
    this.out.write(`${this.first ? '\n' : ',\n'}${jsonText(item)}`);
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
