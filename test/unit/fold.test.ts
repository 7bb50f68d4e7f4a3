// The fold: the events of one target between two store calls become one TargetActivity, whatever their order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ActivityFold } from '../../src/daemon/fold.js';
import { parseAddress, parseTarget, type IpAddress, type IpPrefix } from '../../src/net/ip.js';
import type { SecurityEvent } from '../../src/events/types.js';

function event(kind: string, address: IpAddress, at: number, accountId = '6001'): SecurityEvent {
  return {
    kind,
    service: 'PJSIP',
    address,
    accountId,
    sessionId: `call-${at}`,
    eventTv: '',
    eventTime: null,
    receivedAt: at,
    severity: 'Error',
    usingPassword: false,
  };
}

const COUNT = { action: 'count', weight: 1 } as const;

test('the failures of one address fold into one entry, by kind, without a source', () => {
  const fold = new ActivityFold();
  const a = parseAddress('198.51.100.7')!;
  // each event carries its own parsed copy of the address, as the AMI reader makes them
  fold.add(a, COUNT, event('ChallengeResponseFailed', parseAddress('198.51.100.7')!, 1000, 'alice'));
  fold.add(a, COUNT, event('ChallengeResponseFailed', parseAddress('198.51.100.7')!, 1003, 'bob'));
  fold.add(a, { action: 'count', weight: 2 }, event('InvalidAccountID', parseAddress('198.51.100.7')!, 1001, 'carol'));
  fold.add(a, { action: 'challenge' }, event('ChallengeSent', parseAddress('198.51.100.7')!, 1002));
  assert.equal(fold.size, 1);
  const [activity, ...rest] = fold.take(10);
  assert.equal(rest.length, 0);
  assert.equal(fold.size, 0);
  assert.equal(activity!.target, a);
  assert.equal(activity!.failures, 4);
  assert.deepEqual(Object.entries(activity!.kinds), [
    ['ChallengeResponseFailed', 2],
    ['InvalidAccountID', 1],
  ]);
  assert.equal(activity!.account, 'carol', 'the account of the last failure folded');
  assert.equal(activity!.challenges, 1);
  assert.equal(activity!.first, 1000);
  assert.equal(activity!.last, 1003);
  assert.equal(activity!.source, undefined, 'an address is its own source');
});

test('a network keeps the sender of its last failure, or of its last challenge when it has none', () => {
  const fold = new ActivityFold();
  const net = parseTarget('2001:db8:1:2::/64') as IpPrefix;
  const one = parseAddress('2001:db8:1:2::1')!;
  const two = parseAddress('2001:db8:1:2::2')!;
  const three = parseAddress('2001:db8:1:2::3')!;
  fold.add(net, { action: 'challenge' }, event('ChallengeSent', one, 1));
  fold.add(net, { action: 'challenge' }, event('ChallengeSent', two, 2));
  const [scanned] = fold.take(1);
  assert.equal(scanned!.source, two);
  assert.deepEqual({ ...scanned!.kinds }, {});

  fold.add(net, COUNT, event('InvalidAccountID', one, 3));
  fold.add(net, { action: 'challenge' }, event('ChallengeSent', three, 4));
  fold.add(net, { action: 'success', trust: true }, event('SuccessfulAuth', two, 5));
  const [failed] = fold.take(1);
  assert.equal(failed!.source, one, 'a challenge or a login after a failure does not replace its sender');
  assert.equal(failed!.trust, true);
  assert.equal(failed!.successes, 1);
});

test('entries leave oldest first, and the subnet is asked once per entry', () => {
  const asked: string[] = [];
  const fold = new ActivityFold((t) => {
    asked.push(t.text);
    return parseTarget('203.0.113.0/24') as IpPrefix;
  });
  const targets = ['203.0.113.9', '203.0.113.1', '203.0.113.5'].map((t) => parseAddress(t)!);
  for (let round = 0; round < 3; round++) for (const t of targets) fold.add(t, COUNT, event('InvalidPassword', t, round));
  assert.deepEqual(asked, ['203.0.113.9', '203.0.113.1', '203.0.113.5']);
  const first = fold.take(2);
  assert.deepEqual(
    first.map((a) => [a.target.text, a.failures, a.subnet?.text]),
    [
      ['203.0.113.9', 3, '203.0.113.0/24'],
      ['203.0.113.1', 3, '203.0.113.0/24'],
    ],
  );
  assert.deepEqual(
    fold.take(2).map((a) => a.target.text),
    ['203.0.113.5'],
  );
});
