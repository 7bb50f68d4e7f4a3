import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Policy } from '../../src/policy/policy.js';
import { SameRequestFilter, StreamDecider } from '../../src/policy/same-request.js';
import { loadConfig } from '../../src/config/load.js';
import { parseAddress } from '../../src/net/ip.js';
import type { SecurityEvent } from '../../src/events/types.js';

const ev = (kind: string, address: string): SecurityEvent => ({
  kind,
  service: 'PJSIP',
  address: parseAddress(address)!,
  accountId: '6001',
  eventTime: null,
  receivedAt: 0,
  severity: 'Error',
  usingPassword: false,
  sessionId: '',
  eventTv: '',
});

test('every kind has a weight: the Error kinds count 1, informational ones feed their own rules', () => {
  const p = new Policy(loadConfig({ env: {} }).policy);
  for (const k of [
    'InvalidAccountID',
    'ChallengeResponseFailed',
    'InvalidPassword',
    'FailedACL',
    'RequestNotSupported',
    'RequestNotAllowed',
    'RequestBadFormat',
    'AuthMethodNotAllowed',
    'UnexpectedAddress',
    'InvalidTransport',
    'SessionLimit',
  ]) {
    assert.deepEqual(p.decide(ev(k, '198.18.0.11')), { action: 'count', weight: 1 }, k);
  }
  for (const k of ['MemoryLimit', 'LoadAverageLimit', 'FullyBooted', 'SomethingNew']) {
    assert.deepEqual(p.decide(ev(k, '198.18.0.11')), { action: 'skip', why: 'not-a-failure' }, k);
  }
  assert.deepEqual(p.decide(ev('ChallengeSent', '198.18.0.11')), { action: 'challenge' });
  const custom = new Policy(loadConfig({ env: { AMI_GUARD_POLICY_WEIGHTS: 'InvalidPassword=0,RequestBadFormat=3' } }).policy);
  assert.equal(custom.decide(ev('InvalidPassword', '198.18.0.11')).action, 'skip');
  assert.deepEqual(custom.decide(ev('RequestBadFormat', '198.18.0.11')), { action: 'count', weight: 3 });
  assert.deepEqual(custom.decide(ev('FailedACL', '198.18.0.11')), { action: 'count', weight: 1 }, 'merged over the defaults');
  assert.throws(() => loadConfig({ env: { AMI_GUARD_POLICY_WEIGHTS: 'Bad Kind=1' } }), /policy\.weights/);
});

test('a successful login with a password trusts a phone; an AMI login only when configured', () => {
  const success = (service: string, usingPassword: boolean): SecurityEvent => ({
    ...ev('SuccessfulAuth', '198.18.0.20'),
    service,
    usingPassword,
  });
  const p = new Policy(loadConfig({ env: {} }).policy);
  assert.deepEqual(p.decide(success('PJSIP', true)), { action: 'success', trust: true });
  assert.deepEqual(p.decide(success('SIP', true)), { action: 'success', trust: true });
  assert.deepEqual(p.decide(success('AMI', false)), { action: 'success', trust: false });
  const ami = new Policy(loadConfig({ env: { AMI_GUARD_POLICY_TRUST_AMI: 'true' } }).policy);
  assert.deepEqual(ami.decide(success('AMI', false)), { action: 'success', trust: true });
});

test('the same-request filter remembers at most max addresses, the latest ones, and pairs only the last FailedACL', () => {
  const f = new SameRequestFilter(1_000);
  const at = (kind: string, address: string, session: string): SecurityEvent => ({
    ...ev(kind, address),
    sessionId: session,
    eventTime: 7,
  });
  const v6 = (i: number): string => `2001:db8::${i.toString(16)}`;
  // a rotating attacker: 50,000 addresses, one FailedACL each
  for (let i = 0; i < 50_000; i++) {
    assert.equal(f.isRepeat(at('FailedACL', v6(i), `s${i}`)), false);
    assert.ok(f.size <= 1_000, `${f.size} remembered after ${i + 1}`);
  }
  // the latest are remembered; the first is long gone
  assert.equal(f.isRepeat(at('ChallengeResponseFailed', v6(49_999), 's49999')), true);
  assert.equal(f.isRepeat(at('ChallengeResponseFailed', v6(49_500), 's49500')), true);
  assert.equal(f.isRepeat(at('ChallengeResponseFailed', v6(0), 's0')), false);
  // a newer FailedACL of an address replaces its last: only that one pairs
  f.isRepeat(at('FailedACL', v6(49_600), 'newer'));
  assert.equal(f.isRepeat(at('ChallengeResponseFailed', v6(49_600), 's49600')), false);
  f.isRepeat(at('FailedACL', v6(49_601), 'newer'));
  assert.equal(f.isRepeat(at('ChallengeResponseFailed', v6(49_601), 'newer')), true);
  assert.equal(f.isRepeat(at('ChallengeResponseFailed', v6(49_601), 'newer')), false, 'consumed');
});

test("pjsip's double report of one request (FailedACL, then ChallengeResponseFailed: same session, same time) counts once", () => {
  const p = new StreamDecider(new Policy(loadConfig({ env: {} }).policy));
  const at = (kind: string, session: string, t: number): SecurityEvent => ({
    ...ev(kind, '198.18.0.13'),
    sessionId: session,
    eventTime: t,
  });
  assert.equal(p.decide(at('FailedACL', '1-4574@x', 1000)).action, 'count');
  assert.deepEqual(p.decide(at('ChallengeResponseFailed', '1-4574@x', 1000)), { action: 'skip', why: 'same-request' });
  // the pair is used up: the next guess on that Call-ID, even at the same millisecond, counts
  assert.equal(p.decide(at('ChallengeResponseFailed', '1-4574@x', 1000)).action, 'count');
  assert.equal(p.decide(at('ChallengeResponseFailed', '1-4574@x', 1001)).action, 'count');
  // a FailedACL of another request does not hide this one
  assert.equal(p.decide(at('FailedACL', 'other', 1002)).action, 'count');
  assert.equal(p.decide(at('ChallengeResponseFailed', '1-4574@x', 1002)).action, 'count');
});

test('60 wrong passwords in a burst on one Call-ID and one nonce, within one millisecond, are 60 guesses', () => {
  const p = new StreamDecider(new Policy(loadConfig({ env: {} }).policy));
  let counted = 0;
  for (let i = 0; i < 60; i++) {
    const e: SecurityEvent = {
      ...ev('ChallengeResponseFailed', '198.18.0.11'),
      sessionId: 'same-call-id',
      eventTv: '2026-11-21T19:15:48.554+0000',
    };
    if (p.decide(e).action === 'count') counted++;
  }
  assert.equal(counted, 60);
});

test('ignoreip: addresses and networks, v4, v6 and v4-mapped, loopback by default', () => {
  const p = new Policy(loadConfig({ env: { AMI_GUARD_POLICY_IGNOREIP: '127.0.0.0/8,::1,198.18.0.0/24,fd00::/64' } }).policy);
  assert.deepEqual(p.decide(ev('InvalidPassword', '198.18.0.13')), { action: 'skip', why: 'ignored' });
  assert.deepEqual(p.decide(ev('InvalidPassword', '::ffff:198.18.0.13')), { action: 'skip', why: 'ignored' });
  assert.deepEqual(p.decide(ev('InvalidPassword', 'fd00::66')), { action: 'skip', why: 'ignored' });
  assert.equal(p.decide(ev('InvalidPassword', '198.18.1.13')).action, 'count');
  const d = new Policy(loadConfig({ env: {} }).policy);
  assert.deepEqual(d.decide(ev('InvalidPassword', '127.0.0.1')), { action: 'skip', why: 'ignored' });
  assert.deepEqual(d.decide(ev('InvalidPassword', '::1')), { action: 'skip', why: 'ignored' });
});

test('property: an ignore-listed or unbannable address is never counted, whatever the kind', () => {
  const p = new Policy(loadConfig({ env: { AMI_GUARD_POLICY_IGNOREIP: '10.0.0.0/8,2001:db8::/32' } }).policy);
  const kinds = fc.constantFrom('InvalidAccountID', 'ChallengeResponseFailed', 'InvalidPassword', 'FailedACL', 'ChallengeSent');
  const ignored = fc.oneof(
    fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255)).map(([a, b, c]) => `10.${a}.${b}.${c}`),
    fc.tuple(fc.nat(0xffff), fc.nat(0xffff)).map(([a, b]) => `2001:db8:${a.toString(16)}::${b.toString(16)}`),
    fc.tuple(fc.nat(255), fc.nat(255)).map(([a, b]) => `::ffff:10.1.${a}.${b}`),
    fc.constantFrom('127.0.0.1', '0.0.0.0', '224.0.0.5', '::', 'ff02::1', '255.255.255.255'),
  );
  fc.assert(
    fc.property(kinds, ignored, (k, a) => p.decide(ev(k, a)).action === 'skip'),
    { numRuns: 5000 },
  );
});
