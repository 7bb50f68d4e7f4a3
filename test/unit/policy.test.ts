import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Policy } from '../../src/policy/policy.js';
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
});

test('only the configured failure kinds count', () => {
  const p = new Policy(loadConfig({ env: {} }).policy);
  for (const k of ['InvalidAccountID', 'ChallengeResponseFailed', 'InvalidPassword', 'FailedACL']) {
    assert.deepEqual(p.decide(ev(k, '198.18.0.11')), { action: 'count', weight: 1 });
  }
  for (const k of ['ChallengeSent', 'SuccessfulAuth', 'FullyBooted']) assert.equal(p.decide(ev(k, '198.18.0.11')).action, 'skip');
  const custom = new Policy(loadConfig({ env: { AMI_GUARD_POLICY_FAILURES: 'RequestBadFormat' } }).policy);
  assert.equal(custom.decide(ev('InvalidPassword', '198.18.0.11')).action, 'skip');
  assert.equal(custom.decide(ev('RequestBadFormat', '198.18.0.11')).action, 'count');
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
  fc.assert(fc.property(kinds, ignored, (k, a) => p.decide(ev(k, a)).action === 'skip'), { numRuns: 5000 });
});
