// What an address is counted and banned as (policy.ipv6prefix), and which subnet a ban escalates into
// (policy.subnet.*), with the refusals of this node deciding both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Policy } from '../../src/policy/policy.js';
import { loadConfig } from '../../src/config/load.js';
import { parseAddress, parseTarget, type IpAddress } from '../../src/net/ip.js';

const a = (text: string): IpAddress => parseAddress(text)!;
const policy = (env: NodeJS.ProcessEnv = {}): Policy => new Policy(loadConfig({ env }).policy);

test('an IPv6 source counts toward its /64 by default; IPv4 toward itself; 128 keeps one address each', () => {
  const p = policy();
  assert.equal(p.countingTarget(a('2001:db8:1:2::66')).text, '2001:db8:1:2::/64');
  assert.equal(p.countingTarget(a('2001:db8:1:2:ffff:ffff:ffff:ffff')).text, '2001:db8:1:2::/64');
  assert.equal(p.countingTarget(a('2001:db8:1:3::66')).text, '2001:db8:1:3::/64');
  const v4 = a('198.51.100.7');
  assert.equal(p.countingTarget(v4), v4);
  // the same network for every address of it: one parsed value, so the fold and the ban cache key on one text
  assert.equal(p.countingTarget(a('2001:db8:1:2::1')), p.countingTarget(a('2001:db8:1:2::2')));
  const per = a('2001:db8:1:2::66');
  assert.equal(policy({ AMI_GUARD_POLICY_IPV6PREFIX: '128' }).countingTarget(per), per);
  assert.equal(policy({ AMI_GUARD_POLICY_IPV6PREFIX: '48' }).countingTarget(per).text, '2001:db8:1::/48');
});

test('a prefix this node would not ban counts per address: an ignore-listed address in it, this host, its gateway', () => {
  const p = policy({ AMI_GUARD_POLICY_IGNOREIP: '127.0.0.0/8,::1,2001:db8:1:2::20' });
  const attacker = a('2001:db8:1:2::66');
  assert.equal(p.countingTarget(attacker), attacker, 'the phone ignore-listed inside the prefix keeps it from being counted whole');
  assert.equal(p.countingTarget(a('2001:db8:1:3::66')).text, '2001:db8:1:3::/64');
  // what the host learns at run time (its own fd00::2, its gateway): the prefix around them is refused from then on
  const q = policy();
  assert.equal(q.countingTarget(a('fd00::66')).text, 'fd00::/64');
  q.neverBan.learn({ own: [a('fd00::2')], gateways: [a('fd00::1')] }, []);
  const next = a('fd00::66');
  assert.equal(q.countingTarget(next), next, 'the attacker next to the PBX is counted on its own');
  assert.equal(q.countingTarget(a('fd00:0:0:1::66')).text, 'fd00:0:0:1::/64');
});

test('the subnet of a ban: off by default; /24 and /48 when on; refused ones and targets no narrower are none', () => {
  assert.equal(policy().subnetOf(a('198.51.100.7')), null);
  const p = policy({ AMI_GUARD_POLICY_SUBNET_MAXBANS: '3', AMI_GUARD_POLICY_IGNOREIP: '127.0.0.0/8,::1,203.0.113.20' });
  assert.equal(p.subnetOf(a('198.51.100.7'))?.text, '198.51.100.0/24');
  assert.equal(p.subnetOf(parseTarget('2001:db8:9:4::/64')!)?.text, '2001:db8:9::/48');
  assert.equal(p.subnetOf(a('2001:db8:9:4::1'))?.text, '2001:db8:9::/48');
  assert.equal(p.subnetOf(parseTarget('198.51.100.0/24')!), null, 'no narrower than the subnet');
  assert.equal(p.subnetOf(a('203.0.113.9')), null, 'holds an ignore-listed address');
  p.neverBan.learn({ own: [a('192.0.2.5')], gateways: [] }, []);
  assert.equal(p.subnetOf(a('192.0.2.77')), null, 'holds this host');
  const wide = policy({ AMI_GUARD_POLICY_SUBNET_MAXBANS: '2', AMI_GUARD_POLICY_SUBNET_IPV4: '16', AMI_GUARD_POLICY_SUBNET_IPV6: '40' });
  assert.equal(wide.subnetOf(a('198.51.100.7'))?.text, '198.51.0.0/16');
  assert.equal(wide.subnetOf(parseTarget('2001:db8:9:4::/64')!)?.text, '2001:db8::/40');
});

test('the configuration refuses prefix lengths that do not nest', () => {
  const bad: Array<[NodeJS.ProcessEnv, RegExp]> = [
    [{ AMI_GUARD_POLICY_IPV6PREFIX: '24' }, /policy\.ipv6prefix \/24 is wider than policy\.widest\.ipv6/],
    [
      { AMI_GUARD_POLICY_SUBNET_MAXBANS: '3', AMI_GUARD_POLICY_SUBNET_IPV6: '64' },
      /policy\.subnet\.ipv6 \/64 must be shorter than policy\.ipv6prefix/,
    ],
    [
      { AMI_GUARD_POLICY_SUBNET_MAXBANS: '3', AMI_GUARD_POLICY_SUBNET_IPV4: '4' },
      /policy\.subnet\.ipv4 \/4 is wider than policy\.widest\.ipv4/,
    ],
    [{ AMI_GUARD_POLICY_SUBNET_MAXBANS: '3', AMI_GUARD_POLICY_SUBNET_IPV4: '32' }, /shorter than \/32/],
    [{ AMI_GUARD_POLICY_SUBNET_MAXBANS: '1000' }, /at most 256/],
  ];
  for (const [env, re] of bad) assert.throws(() => loadConfig({ env }), re, JSON.stringify(env));
  // with escalation off its lengths are not checked against the counting prefix
  assert.doesNotThrow(() => loadConfig({ env: { AMI_GUARD_POLICY_SUBNET_IPV6: '64' } }));
});
