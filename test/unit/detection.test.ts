// The detection rules over whole event streams: real recordings through the dry run, and random streams through
// the same decider and store semantics the daemon uses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { replayFile } from '../../src/cli/commands/replay.js';
import { loadConfig } from '../../src/config/load.js';
import { Policy } from '../../src/policy/policy.js';
import { StreamDecider } from '../../src/policy/same-request.js';
import { singleActivity } from '../../src/daemon/fold.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { parseAddress } from '../../src/net/ip.js';
import type { SecurityEvent } from '../../src/events/types.js';

const SCENARIOS = [
  'register-bruteforce',
  'chansip-register-bruteforce',
  'extension-scan',
  'acl-violation',
  'ipv6-attacker',
  'ami-bruteforce',
  'legit-phone',
  'chansip-legit-phone',
];
const FAILURE_KINDS = new Set(['InvalidAccountID', 'ChallengeResponseFailed', 'InvalidPassword', 'FailedACL']);

/**
 * The SIP requests behind one address's failure events, read straight from the recording: every failure event is a
 * request, except the ChallengeResponseFailed pjsip adds for a request it already reported as FailedACL (same
 * SessionID and EventTV, the next ChallengeResponseFailed after it).
 */
function requestsIn(scenario: string, address: string): number {
  let n = 0;
  let lastAcl = '';
  for (const line of readFileSync(`test/fixtures/ami/${scenario}.jsonl`, 'utf8').trim().split('\n')) {
    const raw = (JSON.parse(line) as { raw: string }).raw;
    const h = Object.fromEntries(raw.split('\r\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]));
    if (!FAILURE_KINDS.has(h.Event ?? '') || !(h.RemoteAddress ?? '').includes(`/${address}/`)) continue;
    const request = `${h.SessionID}|${h.EventTV}`;
    if (h.Event === 'ChallengeResponseFailed' && request === lastAcl) {
      lastAcl = '';
      continue;
    }
    if (h.Event === 'FailedACL') lastAcl = request;
    else if (h.Event === 'ChallengeResponseFailed') lastAcl = '';
    n++;
  }
  return n;
}

test('no double counting: each request counts once however many events Asterisk reports for it', async () => {
  // thresholds out of reach, so the whole recording is counted
  for (const k of ['MAXRETRY', 'SCANNER_MAXRETRY', 'TRUST_MAXRETRY', 'OFFENDER_MAXRETRY']) process.env[`AMI_GUARD_POLICY_${k}`] = '100000';
  try {
    for (const s of SCENARIOS) {
      const truth = JSON.parse(readFileSync(`test/fixtures/ami/${s}.truth.json`, 'utf8')) as { attackers: string[]; legitimate: string[] };
      const report = await replayFile(`test/fixtures/ami/${s}.ami`, {});
      for (const ip of [...truth.attackers, ...truth.legitimate]) {
        const counted = report.addresses.find((a) => a.address === ip)?.counted ?? 0;
        assert.equal(counted, requestsIn(s, ip), `${s} ${ip}`);
      }
    }
    // acl-violation reports each guess as FailedACL + ChallengeResponseFailed on one request: fewer counts than events
    const acl = await replayFile('test/fixtures/ami/acl-violation.ami', {});
    const a = acl.addresses.find((x) => x.address === '198.18.0.13')!;
    assert.ok(a.counted < (a.events.FailedACL ?? 0) + (a.events.ChallengeResponseFailed ?? 0));
    assert.ok(a.counted >= (a.events.ChallengeResponseFailed ?? 0), 'every guess still counts');
  } finally {
    for (const k of ['MAXRETRY', 'SCANNER_MAXRETRY', 'TRUST_MAXRETRY', 'OFFENDER_MAXRETRY']) delete process.env[`AMI_GUARD_POLICY_${k}`];
  }
});

const KINDS = [
  'InvalidAccountID',
  'ChallengeResponseFailed',
  'InvalidPassword',
  'FailedACL',
  'RequestBadFormat',
  'ChallengeSent',
  'SuccessfulAuth',
  'MemoryLimit',
];

function event(kind: string, address: string, t: number, session: string, service = 'PJSIP'): SecurityEvent {
  return {
    kind,
    service,
    address: parseAddress(address)!,
    accountId: '6001',
    eventTime: t,
    receivedAt: t,
    severity: 'Error',
    usingPassword: true,
    sessionId: session,
    eventTv: String(t),
  };
}

async function run(policy: Policy, events: SecurityEvent[]): Promise<Set<string>> {
  const store = new MemoryStore({ nodeId: 'prop', policy: policy.params, clock: () => events.at(-1)?.receivedAt ?? 0 });
  const decider = new StreamDecider(policy);
  const banned = new Set<string>();
  for (const e of events) {
    const d = decider.decide(e);
    if (d.action === 'skip') continue;
    const [v] = await store.recordActivity([singleActivity(e.address, d, e, e.receivedAt)], e.receivedAt);
    if (v?.type === 'banned') banned.add(v.ban.address);
  }
  await store.close();
  return banned;
}

test('property: an ignore-listed address is never banned, whatever the event sequence', async () => {
  const policy = new Policy(loadConfig({ env: { AMI_GUARD_POLICY_IGNOREIP: '127.0.0.0/8,::1,10.9.0.0/16' } }).policy);
  const step = fc.record({
    kind: fc.constantFrom(...KINDS),
    who: fc.constantFrom('10.9.1.1', '::ffff:10.9.1.1', '10.9.200.7', '198.51.100.1'),
    dt: fc.integer({ min: 0, max: 5000 }),
    session: fc.constantFrom('a', 'b', 'c'),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(step, { maxLength: 80 }), async (steps) => {
      let t = 1_800_000_000_000;
      const events = steps.map((s) => event(s.kind, s.who, (t += s.dt), s.session));
      const banned = await run(policy, events);
      for (const b of banned) assert.ok(!b.startsWith('10.9.'), `${b} banned`);
    }),
    { numRuns: 300 },
  );
});

test('property: an address with no failures and no unanswered challenges is never banned', async () => {
  const policy = new Policy(loadConfig({ env: {} }).policy);
  // a phone: challenges each answered by a login, informational events, nothing that counts
  const step = fc.record({
    answered: fc.boolean(),
    extra: fc.constantFrom('MemoryLimit', 'SuccessfulAuth', 'LoadAverageLimit'),
    dt: fc.integer({ min: 0, max: 3000 }),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(step, { maxLength: 120 }), async (steps) => {
      let t = 1_800_000_000_000;
      const events: SecurityEvent[] = [];
      for (const s of steps) {
        t += s.dt;
        if (s.answered) {
          events.push(event('ChallengeSent', '198.51.100.20', t, `s${t}`));
          events.push(event('SuccessfulAuth', '198.51.100.20', t + 1, `s${t}`));
        } else {
          events.push(event(s.extra, '198.51.100.20', t, `s${t}`));
        }
      }
      assert.equal((await run(policy, events)).size, 0);
    }),
    { numRuns: 300 },
  );
});
