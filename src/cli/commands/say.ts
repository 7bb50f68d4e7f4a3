import { printable } from '../output.js';

/** A remark beside a verb's answer (where it came from, what waits for Redis): on stderr, so stdout stays the answer. */
export function say(note: string): void {
  process.stderr.write(`ami-guard: ${printable(note)}\n`);
}
