// Reads the recordings in test/fixtures/ami without going through src/ami/recording.ts, so the tests of that module
// and of the frame reader compare against an independent reading.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const FIXTURES = 'test/fixtures/ami';

export const SCENARIOS = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.jsonl'))
  .map((f) => f.slice(0, -'.jsonl'.length))
  .sort();

export interface JsonlRecord {
  t_ms: number;
  conn: number;
  raw: string;
}

export function fixturePath(scenario: string, ext: 'jsonl' | 'ami'): string {
  return join(FIXTURES, `${scenario}.${ext}`);
}

export function jsonlRecords(scenario: string): JsonlRecord[] {
  return readFileSync(fixturePath(scenario, 'jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as JsonlRecord);
}

/** The records that are AMI events, i.e. what the supervisor must emit as 'message'. */
export function eventRecords(scenario: string): JsonlRecord[] {
  return jsonlRecords(scenario).filter((r) => r.raw.startsWith('Event: '));
}

export function amiBytes(scenario: string): Buffer {
  return readFileSync(fixturePath(scenario, 'ami'));
}
