import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCanonicalTarget, parseAddress, parseTarget, unbannableReason } from '../../src/net/ip.js';
import { parseRemoteAddress } from '../../src/events/remote-address.js';

test('IPv4 must be a strict dotted quad', () => {
  assert.equal(parseAddress('198.18.0.11')?.text, '198.18.0.11');
  for (const bad of ['999.1.1.1', '1.2.3', '01.2.3.4', '0x7f.0.0.1', '1.2.3.4 ', ' 1.2.3.4', '1.2.3.4/32', '', '1.2.3.4.5']) {
    assert.equal(parseAddress(bad), null, bad);
  }
});

test('IPv6 in any spelling becomes RFC 5952; zone ids and junk are refused', () => {
  assert.equal(parseAddress('FD00:0000:0000:0000:0000:0000:0000:0066')?.text, 'fd00::66');
  assert.equal(parseAddress('fd00::66')?.family, 6);
  assert.equal(parseAddress('2001:db8:0:0:1:0:0:1')?.text, '2001:db8::1:0:0:1');
  for (const bad of ['fe80::1%eth0', 'fd00:::66', 'gd00::1', '[fd00::66]', 'fd00::66; flush ruleset']) {
    assert.equal(parseAddress(bad), null, bad);
  }
});

test('IPv4-mapped IPv6 is the IPv4 address', () => {
  assert.deepEqual(parseAddress('::ffff:198.18.0.11'), parseAddress('198.18.0.11'));
  assert.deepEqual(parseAddress('::FFFF:c612:000b'), parseAddress('198.18.0.11'));
  assert.equal(parseTarget('::ffff:198.18.0.0/112')?.text, '198.18.0.0/16');
});

test('IPv4-compatible IPv6 stays IPv6, and a dotted tail is as strict as IPv4 (found by test/fuzz)', () => {
  // inet_ntop prints ::7f00:1 as ::127.0.0.1; it is an IPv6 source, not 127.0.0.1
  assert.equal(parseAddress('::127.0.0.1')?.text, '::7f00:1');
  assert.equal(parseAddress('::127.0.0.1')?.family, 6);
  assert.equal(parseAddress('::0.0.0.1')?.text, '::1');
  assert.equal(parseTarget('::198.18.0.0/112')?.text, '::c612:0/112');
  for (const bad of ['::ffff:010.0.0.1', '::ffff:1.2.3.04', '::ffff:999.0.0.1', '::ffff:1.2.3', '1.2.3.4::1']) {
    assert.equal(parseAddress(bad), null, bad);
  }
});

test('CIDR targets are normalised, /32 and /128 are addresses', () => {
  assert.equal(parseTarget('203.0.113.77/24')?.text, '203.0.113.0/24');
  assert.equal(parseTarget('2001:db8::1/48')?.text, '2001:db8::/48');
  assert.equal(parseTarget('198.18.0.11/32')?.kind, 'address');
  assert.equal(parseTarget('fd00::66/128')?.text, 'fd00::66');
  for (const bad of ['1.2.3.4/33', '1.2.3.4/', '1.2.3.4/-1', '1.2.3.4/24/1', 'fd00::/129', 'x/8']) {
    assert.equal(parseTarget(bad), null, bad);
  }
});

test("isCanonicalTarget accepts only the parser's own output", () => {
  assert.ok(isCanonicalTarget('198.18.0.11'));
  assert.ok(isCanonicalTarget('203.0.113.0/24'));
  assert.ok(!isCanonicalTarget('203.0.113.7/24'));
  assert.ok(!isCanonicalTarget('FD00::66'));
  assert.ok(!isCanonicalTarget('1.2.3.4 } ; flush ruleset'));
});

test('loopback, unspecified, multicast and broadcast are never bannable', () => {
  for (const a of ['127.0.0.1', '::1', '0.0.0.0', '::', '224.0.0.1', 'ff02::1', '255.255.255.255', '::ffff:127.0.0.1']) {
    assert.ok(unbannableReason(parseTarget(a)!), a);
  }
  for (const a of ['0.0.0.0/0', '::/0', '127.0.0.0/8']) assert.ok(unbannableReason(parseTarget(a)!), a);
  for (const a of ['198.18.0.11', 'fd00::66', '10.0.0.0/8', '203.0.113.0/24']) assert.equal(unbannableReason(parseTarget(a)!), null, a);
});

test('RemoteAddress: the address lies between the second and the last slash', () => {
  assert.equal(parseRemoteAddress('IPV4/UDP/198.18.0.11/5060')?.text, '198.18.0.11');
  assert.equal(parseRemoteAddress('IPV4/TCP/198.18.0.15/45941')?.text, '198.18.0.15');
  assert.equal(parseRemoteAddress('IPV6/UDP/fd00::66/5060')?.text, 'fd00::66');
  assert.equal(parseRemoteAddress('IPV6/UDP/::ffff:198.18.0.11/5060')?.text, '198.18.0.11');
  assert.equal(parseRemoteAddress('IPV4//198.18.0.11/5060')?.text, '198.18.0.11');
  assert.equal(parseRemoteAddress('IPV4/198.18.0.11/5060')?.text, '198.18.0.11');
  for (const bad of [
    'IPV4/UDP/999.1.1.1/5060',
    'IPV4/UDP/fd00::66/5060',
    'IPX/UDP/1.2.3.4/5060',
    '198.18.0.11',
    'IPV4/UDP/[fd00::66]/5060',
    '',
    'IPV6/UDP/fd00::66; flush ruleset/5060',
  ]) {
    assert.equal(parseRemoteAddress(bad), null, bad);
  }
});
