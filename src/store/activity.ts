// What every store checks of a batch before it counts anything, and the single-event calls expressed as batches of
// one, so the three stores share one implementation of each rule.
import { contains, isParsedTarget } from '../net/ip.js';
import type { ActivityVerdict, Brink, ChallengeInput, FailureInput, FailureVerdict, Store, SuccessInput, TargetActivity } from './store.js';

/** characters of an account id kept (the normaliser truncates to 64 and marks the cut; this bounds memory anyway) */
export const ACCOUNT_MAX = 80;
/** characters of a manual ban reason kept */
export const REASON_MAX = 200;
/** bans kept per target; a ban record's `prev` counts up to this */
export const HISTORY_CAP = 50;

function count(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`invalid ${what} ${n}`);
}

export function checkTime(now: number): void {
  if (!Number.isSafeInteger(now)) throw new RangeError(`invalid time ${now}`);
}

/** A batch the daemon built is trusted for its shape only: a bug must fail loudly, never count nonsense. */
export function checkBatch(batch: readonly TargetActivity[], now: number): void {
  checkTime(now);
  for (const a of batch) {
    if (!isParsedTarget(a.target)) throw new RangeError('activity for a target that did not come from the IP parser');
    count(a.failures, 'failure count');
    count(a.challenges, 'challenge count');
    count(a.successes, 'success count');
    checkTime(a.first);
    checkTime(a.last);
    if (a.first > a.last) throw new RangeError(`activity ends (${a.last}) before it starts (${a.first})`);
    if (typeof a.account !== 'string') throw new RangeError('invalid account');
    for (const kind in a.kinds) count(a.kinds[kind]!, `count of ${kind}`);
    // what may be banned instead of the target, or along with it, must have come from the parser and lie around it
    if (a.source !== undefined && (!isParsedTarget(a.source) || a.source.kind !== 'address' || !contains(a.target, a.source))) {
      throw new RangeError('activity whose source is not a parsed address inside its target');
    }
    if (
      a.subnet !== undefined &&
      (!isParsedTarget(a.subnet) || a.subnet.kind !== 'prefix' || a.subnet.bits >= a.target.bits || !contains(a.subnet, a.target))
    ) {
      throw new RangeError('activity whose subnet is not a parsed network around its target');
    }
  }
}

/** Checks what both stores rely on: integer ms (they are written into entries as digits) and weight. */
export function checkFailure(input: FailureInput): void {
  checkTime(input.now);
  if (!Number.isSafeInteger(input.weight) || input.weight < 1) throw new RangeError(`invalid weight ${input.weight}`);
}

/** The account id a store keeps of an activity (the normaliser made it printable): bounded, whoever called. */
export function storedAccount(account: string): string {
  return account.length > ACCOUNT_MAX ? account.slice(0, ACCOUNT_MAX) : account;
}

const NONE: Readonly<Record<string, number>> = Object.freeze({});

export function failureActivity(i: FailureInput): TargetActivity {
  checkFailure(i);
  return {
    target: i.address,
    failures: i.weight,
    kinds: { [i.kind]: 1 },
    account: i.account,
    challenges: 0,
    successes: 0,
    trust: false,
    first: i.now,
    last: i.now,
  };
}

export function challengeActivity(i: ChallengeInput): TargetActivity {
  checkTime(i.now);
  return { target: i.address, failures: 0, kinds: NONE, account: '', challenges: 1, successes: 0, trust: false, first: i.now, last: i.now };
}

export function successActivity(i: SuccessInput): TargetActivity {
  checkTime(i.now);
  return {
    target: i.address,
    failures: 0,
    kinds: NONE,
    account: '',
    challenges: 0,
    successes: 1,
    trust: i.trust,
    first: i.now,
    last: i.now,
  };
}

const COUNTED: readonly ActivityVerdict[] = Array.from({ length: 256 }, (_, count) => Object.freeze({ type: 'counted', count }));

/** A `counted` verdict without an allocation for the common counts (verdicts are read, never changed). */
export function counted(count: number, brink?: Brink): ActivityVerdict {
  if (brink) return { type: 'counted', count, brink };
  return COUNTED[count] ?? { type: 'counted', count };
}

// Single events as batches of one, for any store: the daemon batches, tests and one-off callers need not.

/** One failure event. */
export async function recordFailure(store: Pick<Store, 'recordActivity'>, input: FailureInput): Promise<FailureVerdict> {
  return (await store.recordActivity([failureActivity(input)], input.now))[0]!;
}

/** One ChallengeSent. */
export async function recordChallenge(store: Pick<Store, 'recordActivity'>, input: ChallengeInput): Promise<FailureVerdict> {
  return (await store.recordActivity([challengeActivity(input)], input.now))[0]!;
}

/** One SuccessfulAuth. */
export async function recordSuccess(store: Pick<Store, 'recordActivity'>, input: SuccessInput): Promise<void> {
  await store.recordActivity([successActivity(input)], input.now);
}
