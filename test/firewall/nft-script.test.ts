// Pure tests of the script builder and the listing readers: no nft process runs here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isCanonicalTarget, parseTarget, type IpTarget } from '../../src/net/ip.js';
import { assertBans, elementText, MAX_TIMEOUT_S, netSet, NftScript, SETS, timeoutSeconds } from '../../src/firewall/nft-script.js';
import { covers, foldNetworks, inspectLayout } from '../../src/firewall/nft.js';
import { parseNftDuration, parseSetListing } from '../../src/firewall/nft-listing.js';

const t = (text: string): IpTarget => parseTarget(text)!;
const ban = (text: string, timeoutMs = 60_000) => ({ target: t(text), timeoutMs });

test('table names are validated at construction', () => {
  assert.equal(new NftScript('ami_guard').table, 'ami_guard');
  for (const bad of ['', '1abc', 'a-b', 'a b', 'x; flush ruleset', 'a'.repeat(33), 'tbl\n']) {
    assert.throws(() => new NftScript(bad), /invalid nft table name/, bad);
  }
});

test('elementText refuses anything that did not come from the IP parser, or was changed since', () => {
  assert.equal(elementText(t('2001:db8::1')), '2001:db8::1');
  assert.equal(elementText(t('10.0.0.0/8')), '10.0.0.0/8');
  const forged = (text: string, family: 4 | 6 = 4) => ({ kind: 'address', family, text }) as IpTarget;
  // look-alikes, even with a perfectly canonical text
  for (const text of ['1.2.3.4', '1.2.3.4 } ; flush ruleset ; add table x {', '010.1.1.1', '2001:DB8::1', '']) {
    assert.throws(() => elementText(forged(text)), /non-canonical.*not an address from the IP parser/, text);
  }
  assert.throws(() => elementText({ ...t('1.2.3.4') } as unknown as IpTarget), /non-canonical/, 'a copy is not an instance');
  // a real instance whose fields were changed afterwards: no nft syntax, and the family must match its text
  const mutated = (text: string, field: 'text' | 'family', value: unknown): IpTarget => {
    const target = t(text);
    (target as unknown as Record<string, unknown>)[field] = value;
    return target;
  };
  assert.throws(() => elementText(mutated('1.2.3.4', 'text', '1.2.3.4 } ; flush ruleset')), /non-canonical/);
  assert.throws(() => elementText(mutated('1.2.3.4', 'text', '1.2.3.4 timeout 1s')), /non-canonical/);
  assert.throws(() => elementText(mutated('1.2.3.4', 'family', 6)), /not IPv6/);
  assert.throws(() => elementText(mutated('2001:db8::1', 'family', 4)), /not IPv4/);
  assert.throws(() => elementText(null as unknown as IpTarget), /non-canonical/);
});

test('property: any text that reaches a script is canonical', () => {
  const texts = fc.oneof(fc.string(), fc.ipV4(), fc.ipV6(), fc.ipV4Extended());
  fc.assert(
    fc.property(texts, fc.constantFrom(4, 6), (text, family) => {
      const target = { kind: 'address', family, text } as IpTarget;
      let out: string | null = null;
      try {
        out = new NftScript('t').add([{ target, timeoutMs: 1000 }], false);
      } catch {
        return;
      }
      assert.ok(isCanonicalTarget(text), `accepted ${JSON.stringify(text)}`);
      assert.ok(out.includes(`{ ${text} timeout 1s }`));
    }),
    { numRuns: 2000 },
  );
});

test('timeouts are whole seconds, rounded up, at least 1 s, capped where nft 1.0.6 stops parsing', () => {
  assert.equal(timeoutSeconds(1), 1);
  assert.equal(timeoutSeconds(0), 1);
  assert.equal(timeoutSeconds(-5000), 1);
  assert.equal(timeoutSeconds(1000), 1);
  assert.equal(timeoutSeconds(1001), 2);
  assert.equal(timeoutSeconds(Infinity), MAX_TIMEOUT_S);
  assert.throws(() => timeoutSeconds(NaN), /must be a number/);
});

test('bans that would cut the host off from itself are refused', () => {
  for (const text of ['127.0.0.1', '0.0.0.0/0', '::1', '::/0', '224.0.0.1']) {
    assert.throws(() => assertBans([ban(text)]), /refusing to ban/, text);
  }
  assertBans([ban('198.51.100.7'), ban('2001:db8::/32')]);
});

test('init creates a hash set per family for hosts and an interval set for networks, all four dropped', () => {
  assert.equal(
    new NftScript('ag').init(),
    [
      'add table inet ag',
      'add set inet ag banned_v4 { type ipv4_addr; flags timeout; }',
      'add set inet ag banned_v4_net { type ipv4_addr; flags interval, timeout; }',
      'add set inet ag banned_v6 { type ipv6_addr; flags timeout; }',
      'add set inet ag banned_v6_net { type ipv6_addr; flags interval, timeout; }',
      'add chain inet ag prerouting { type filter hook prerouting priority raw; policy accept; }',
      'flush chain inet ag prerouting',
      'add rule inet ag prerouting ip saddr @banned_v4 counter drop',
      'add rule inet ag prerouting ip saddr @banned_v4_net counter drop',
      'add rule inet ag prerouting ip6 saddr @banned_v6 counter drop',
      'add rule inet ag prerouting ip6 saddr @banned_v6_net counter drop',
      '',
    ].join('\n'),
  );
});

test('add sends hosts and networks of each family to their own set; replacing adds, deletes and adds again', () => {
  const bans = [ban('1.2.3.4', 1500), ban('2001:db8::1', 10_000), ban('10.0.0.0/8', 1000), ban('2001:db8::/32', 1000)];
  assert.equal(
    new NftScript('ag').add(bans, false),
    [
      'add element inet ag banned_v4 { 1.2.3.4 timeout 2s }',
      'add element inet ag banned_v4_net { 10.0.0.0/8 timeout 1s }',
      'add element inet ag banned_v6 { 2001:db8::1 timeout 10s }',
      'add element inet ag banned_v6_net { 2001:db8::/32 timeout 1s }',
      '',
    ].join('\n'),
  );
  assert.equal(
    new NftScript('ag').add(bans.slice(0, 1), true),
    [
      'add element inet ag banned_v4 { 1.2.3.4 }',
      'delete element inet ag banned_v4 { 1.2.3.4 }',
      'add element inet ag banned_v4 { 1.2.3.4 timeout 2s }',
      '',
    ].join('\n'),
  );
});

test('the set is chosen from the checked text, not from the claimed kind', () => {
  const mislabelled = t('10.0.0.0/8');
  (mislabelled as unknown as { kind: string }).kind = 'address';
  assert.equal(
    new NftScript('ag').delete([mislabelled]),
    'add element inet ag banned_v4_net { 10.0.0.0/8 }\ndelete element inet ag banned_v4_net { 10.0.0.0/8 }\n',
  );
});

test('replaceAll flushes all four sets and chunks large loads; rebuild drops the table first', () => {
  const bans = Array.from({ length: 12_000 }, (_, i) => ban(`10.0.${i >> 8}.${i & 255}`));
  const lines = new NftScript('ag').replaceAll(bans).trimEnd().split('\n');
  assert.deepEqual(
    lines.slice(0, 4),
    SETS.map((s) => `flush set inet ag ${s.name}`),
  );
  assert.equal(lines.length, 4 + 3);
  assert.equal(
    lines
      .slice(4)
      .join(' ')
      .match(/timeout 60s/g)?.length,
    12_000,
  );
  assert.equal(new NftScript('ag').delete([]), '');
  const rebuild = new NftScript('ag').rebuild([ban('1.2.3.4'), ban('10.0.0.0/8')]);
  assert.equal(
    rebuild,
    `delete table inet ag\n${new NftScript('ag').init()}` +
      'add element inet ag banned_v4 { 1.2.3.4 timeout 60s }\n' +
      'add element inet ag banned_v4_net { 10.0.0.0/8 timeout 60s }\n',
  );
});

test('the timeout probe uses a hash set, as the host sets are, and re-adds in a transaction of its own', () => {
  const script = new NftScript('ag');
  assert.equal(
    script.probeSetup(),
    [
      'add set inet ag timeout_probe { type ipv4_addr; flags timeout; }',
      'flush set inet ag timeout_probe',
      'add element inet ag timeout_probe { 192.0.2.1 timeout 1000s }',
      '',
    ].join('\n'),
  );
  assert.equal(script.probeReAdd(), 'add element inet ag timeout_probe { 192.0.2.1 timeout 2000s }\n');
});

test('foldNetworks keeps the last ban per target, never folds hosts, folds networks into the widest', () => {
  const { kept, folded } = foldNetworks([
    ban('10.1.2.3', 1000),
    ban('10.0.0.0/8', 60_000),
    ban('10.9.0.0/16', 90_000),
    ban('10.9.9.0/24', 120_000),
    ban('11.0.0.1', 1000),
    ban('11.0.0.1', 5000),
    ban('2001:db8::5'),
    ban('2001:db8::/64', 30_000),
    ban('2001:db8::/96', 10_000),
    ban('2001:db9::/64'),
  ]);
  assert.deepEqual(
    kept.map((b) => [b.target.text, b.timeoutMs]),
    [
      ['10.1.2.3', 1000],
      ['10.0.0.0/8', 120_000],
      ['11.0.0.1', 5000],
      ['2001:db8::5', 60_000],
      ['2001:db8::/64', 30_000],
      ['2001:db9::/64', 60_000],
    ],
  );
  assert.deepEqual(
    folded.map((f) => [f.ban.target.text, f.into]),
    [
      ['10.9.0.0/16', '10.0.0.0/8'],
      ['10.9.9.0/24', '10.0.0.0/8'],
      ['2001:db8::/96', '2001:db8::/64'],
    ],
  );
});

test('covers', () => {
  assert.ok(covers(t('10.0.0.0/8'), t('10.1.2.3')));
  assert.ok(covers(t('10.0.0.0/8'), t('10.1.0.0/16')));
  assert.ok(covers(t('1.2.3.4'), t('1.2.3.4')));
  assert.ok(!covers(t('10.1.0.0/16'), t('10.0.0.0/8')));
  assert.ok(!covers(t('1.2.3.4'), t('1.2.3.5')));
  assert.ok(!covers(t('::/1'), t('1.2.3.4')));
});

test('parseSetListing reads the element shapes nft 1.0.6 prints and skips the rest', () => {
  const text = `table inet ami_guard {
\tset banned_v4 {
\t\ttype ipv4_addr
\t\tflags timeout
\t\telements = { 1.1.1.1, 4.4.4.4 timeout 1h expires 59m58s120ms,
\t\t\t     5.5.5.5 timeout 2d expires 1d23h59m59s999ms comment "a, } b",
\t\t\t     3.3.3.3-3.3.3.9, 2001:db8::1 timeout 10s expires 9s,
\t\t\t     6.6.6.6 counter packets 0 bytes 0 timeout 3s expires 2s }
\t}
}
`;
  const { entries, skipped } = parseSetListing(text, SETS[0]!);
  assert.deepEqual(
    entries.map((e) => [e.target.text, e.expiresMs]),
    [
      ['1.1.1.1', null],
      ['4.4.4.4', 3_598_120],
      ['5.5.5.5', 172_799_999],
      ['6.6.6.6', 2000],
    ],
  );
  assert.deepEqual(skipped, ['3.3.3.3-3.3.3.9', '2001:db8::1 timeout 10s expires 9s']);
  const nets = parseSetListing('set banned_v6_net {\n\telements = { 2001:db8::/32 timeout 1h, 2001:db8:1::5 }\n}', netSet(6));
  assert.deepEqual(
    nets.entries.map((e) => [e.target.text, e.expiresMs]),
    [
      ['2001:db8::/32', null],
      ['2001:db8:1::5', null],
    ],
  );
  assert.deepEqual(parseSetListing('set banned_v6_net {\n\ttype ipv6_addr\n}', netSet(6)), { entries: [], skipped: [] });
});

test('parseNftDuration reads whole nft durations only', () => {
  assert.equal(parseNftDuration('59m58s120ms'), 3_598_120);
  assert.equal(parseNftDuration('3d'), 259_200_000);
  assert.equal(parseNftDuration('1h'), 3_600_000);
  for (const bad of ['', 'h', '1x', '1h ', 'x1h', '1h2']) assert.equal(parseNftDuration(bad), null, bad);
});

test('inspectLayout finds our sets and chain shaped otherwise, and only ours', () => {
  const set = (table: string, name: string, type: string, flags: string[]) => ({ set: { family: 'inet', table, name, type, flags } });
  const rule = (name: string) => ({
    rule: { family: 'inet', table: 'ag', chain: 'prerouting', expr: [{ match: { right: `@${name}` } }, { counter: null }, { drop: null }] },
  });
  const chain = (prio: number) => ({
    chain: { family: 'inet', table: 'ag', name: 'prerouting', type: 'filter', hook: 'prerouting', prio },
  });
  const table = (name: string) => ({ table: { family: 'inet', name } });
  const current = [table('ag'), ...SETS.map((s) => set('ag', s.name, s.type, [...s.flags])), chain(-300), ...SETS.map((s) => rule(s.name))];
  assert.deepEqual(inspectLayout({ nftables: current }, 'ag'), { stale: [], missing: [], complete: true });
  assert.deepEqual(inspectLayout({ nftables: current.slice(0, -1) }, 'ag'), {
    stale: [],
    missing: [`drop rule for @${SETS.at(-1)!.name}`],
    complete: false,
  });
  assert.deepEqual(inspectLayout({ nftables: [] }, 'ag'), { stale: [], missing: ['table inet ag'], complete: false });
  const old = [
    table('ag'),
    table('other'),
    set('ag', 'banned_v4', 'ipv4_addr', ['interval', 'timeout']),
    set('ag', 'banned_v6', 'ipv6_addr', ['timeout']),
    set('ag', 'banned_v4_net', 'ipv6_addr', ['interval', 'timeout']),
    chain(0),
    set('other', 'banned_v6', 'ipv6_addr', ['interval']),
  ];
  const ag = inspectLayout({ nftables: old }, 'ag');
  assert.deepEqual([ag.stale, ag.complete], [['set banned_v4', 'set banned_v4_net', 'chain prerouting'], false]);
  assert.ok(ag.missing.includes('set banned_v6_net'), ag.missing.join(', '));
  const other = inspectLayout({ nftables: old }, 'other');
  assert.deepEqual([other.stale, other.complete], [['set banned_v6'], false]);
});
