// Event kinds as one-letter codes, so a failure window holds a letter per event instead of its name: Asterisk's
// security-event catalogue (main/security_events.c, unchanged since Asterisk 12) gets fixed letters, anything else
// (a kind an operator weighted in policy.weights) is `Z`, read back as `other`. The letters are part of the stored
// layout: never reorder them, only append.

const CATALOGUE = [
  'InvalidAccountID', // A
  'ChallengeResponseFailed', // B
  'InvalidPassword', // C
  'FailedACL', // D
  'RequestNotSupported', // E
  'RequestNotAllowed', // F
  'RequestBadFormat', // G
  'AuthMethodNotAllowed', // H
  'UnexpectedAddress', // I
  'InvalidTransport', // J
  'SessionLimit', // K
  'MemoryLimit', // L
  'LoadAverageLimit', // M
  'SuccessfulAuth', // N
  'ChallengeSent', // O
] as const;

export const OTHER_CODE = 'Z';
export const OTHER_KIND = 'other';
export const CHALLENGE_CODE = 'O';

const byName = new Map<string, string>(CATALOGUE.map((name, i) => [name, String.fromCharCode(65 + i)]));
const byCode = new Map<string, string>(CATALOGUE.map((name, i) => [String.fromCharCode(65 + i), name]));
byCode.set(OTHER_CODE, OTHER_KIND);

export function kindCode(kind: string): string {
  return byName.get(kind) ?? OTHER_CODE;
}

/** the kind a stored code stands for; a letter this version does not know (data from elsewhere) reads as `other` */
export function kindName(code: string): string {
  return byCode.get(code) ?? OTHER_KIND;
}

/** Counts by kind of a string of codes, as a ban record's `kinds`. */
export function tallyCodes(codes: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < codes.length; i++) {
    const name = kindName(codes[i]!);
    out[name] = (out[name] ?? 0) + 1;
  }
  return out;
}

/**
 * The codes of a batch's failures by kind, one letter per event, at most `cap` of them (the window keeps no more
 * failures than that anyway). Kinds in the order of `kinds`.
 */
export function codesOf(kinds: Readonly<Record<string, number>>, cap: number): string {
  let out = '';
  for (const kind in kinds) {
    const n = kinds[kind]!;
    if (n > 0 && out.length < cap) out += kindCode(kind).repeat(Math.min(n, cap - out.length));
  }
  return out;
}
