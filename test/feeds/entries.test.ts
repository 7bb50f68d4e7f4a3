// The packed entries, the split around protected ranges, the list parser and APIBAN's answers: pure logic, checked
// against independent computations (fast-check drives the packed form with random addresses and networks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { contains, parseTarget, targetFromWords, type IpTarget } from '../../src/net/ip.js';
import { EntriesBuilder, FeedDataError, FeedEntries, diffEntries } from '../../src/feeds/entries.js';
import { enforcedView, halves, splitAround } from '../../src/feeds/view.js';
import { ListParser, parseLine } from '../../src/feeds/plain-list.js';
import { readPage } from '../../src/feeds/apiban.js';
import { FeedError } from '../../src/feeds/fetch.js';
import { Policy } from '../../src/policy/policy.js';
import { loadConfig } from '../../src/config/load.js';

const t = (text: string): IpTarget => parseTarget(text)!;
const texts = (e: FeedEntries): string[] => [...e.refs()].map((r) => e.target(r.family, r.index).text);
function build(items: readonly string[], withSeen = false, seen: (i: number) => number = () => 0) {
  const b = new EntriesBuilder(withSeen);
  items.forEach((x, i) => b.add(t(x), seen(i)));
  return b.build();
}

test('entries are sorted by address, IPv4 first, duplicates merged, what a wider network of the feed covers folded', () => {
  const r = build([
    '192.0.2.1',
    '10.0.0.0/8',
    '10.1.0.0/16',
    '10.1.2.3',
    '192.0.2.1',
    '2001:db8::/32',
    '2001:db8::1',
    '2001:db9::1',
    '1.2.3.4',
  ]);
  assert.deepEqual(texts(r.entries), ['1.2.3.4', '10.0.0.0/8', '192.0.2.1', '2001:db8::/32', '2001:db9::1']);
  assert.equal(r.duplicates, 1);
  assert.equal(r.covered, 3);
  // APIBAN: an entry seen later than the network around it stays (it outlives the network's bantime)
  const seen = build(['10.0.0.0/8', '10.1.2.3', '10.1.2.4'], true, (i) => [100, 200, 50][i]!);
  assert.deepEqual(texts(seen.entries), ['10.0.0.0/8', '10.1.2.3']);
  assert.equal(seen.entries.seen(4, 1), 200);
  // a duplicate keeps the latest time it was seen
  const dup = build(['198.51.100.1', '198.51.100.1'], true, (i) => [300, 100][i]!);
  assert.equal(dup.entries.seen(4, 0), 300);
});

test('beyond maxEntries the builder keeps those seen latest', () => {
  const r = build(['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.4'], true, (i) => [40, 10, 30, 20][i]!);
  const two = new EntriesBuilder(true);
  ['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.4'].forEach((x, i) => two.add(t(x), [40, 10, 30, 20][i]!));
  const kept = two.build(2);
  assert.deepEqual(texts(kept.entries), ['198.51.100.1', '198.51.100.3']);
  assert.equal(kept.dropped, 2);
  assert.equal(r.entries.size, 4);
});

const v4 = fc
  .tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 8, max: 32 }))
  .map(([n, bits]) => targetFromWords(4, [bits === 0 ? 0 : (n & (bits === 32 ? -1 : ~((1 << (32 - bits)) - 1))) >>> 0], bits));
const v6 = fc
  .tuple(fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 4, maxLength: 4 }), fc.integer({ min: 32, max: 128 }))
  .map(([w, bits]) => {
    const masked = w.map((x, i) => {
      const keep = Math.max(0, Math.min(32, bits - i * 32));
      return keep === 0 ? 0 : keep === 32 ? x : (x & (-1 << (32 - keep))) >>> 0;
    });
    return targetFromWords(6, masked, bits);
  });
const target = fc.oneof(v4, v6).filter((x): x is IpTarget => x !== null);

test('encode and decode keep every entry; lookups and diffs agree with plain sets (random entries)', () => {
  fc.assert(
    fc.property(fc.array(target, { maxLength: 60 }), fc.array(target, { maxLength: 60 }), (a, b) => {
      const ea = build(a.map((x) => x.text)).entries;
      const eb = build(b.map((x) => x.text)).entries;
      const back = FeedEntries.decode(ea.encode(), 1000);
      assert.deepEqual(texts(back), texts(ea));
      const inA = new Set(texts(ea));
      const inB = new Set(texts(eb));
      for (const x of [...a, ...b]) assert.equal(ea.indexOf(x) >= 0, inA.has(x.text));
      // nothing kept lies inside another kept network
      const kept = texts(ea).map(t);
      for (const x of kept) assert.ok(!kept.some((y) => y !== x && contains(y, x)), x.text);
      const d = diffEntries(ea, eb);
      const named = (e: FeedEntries, lists: Record<4 | 6, number[]>) =>
        ([4, 6] as const).flatMap((f) => lists[f].map((i) => e.target(f, i).text));
      assert.deepEqual(named(eb, d.added).sort(), [...inB].filter((x) => !inA.has(x)).sort());
      assert.deepEqual(named(ea, d.removed).sort(), [...inA].filter((x) => !inB.has(x)).sort());
    }),
    { numRuns: 300 },
  );
});

test('decode refuses whatever encode would not write: nothing half used', () => {
  // header (13 bytes), two IPv4 words, two IPv4 prefix lengths, one IPv6 address, its prefix length
  const good = build(['198.51.100.1', '198.51.101.0/24', '2001:db8::1']).entries.encode();
  assert.equal(good.length, 13 + 8 + 2 + 16 + 1);
  const bad: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['bad magic', Buffer.concat([Buffer.from('XXXX'), good.subarray(4)])],
    ['truncated', good.subarray(0, good.length - 1)],
    ['trailing byte', Buffer.concat([good, Buffer.from([0])])],
    ['unknown flag', Buffer.from(good).fill(7, 4, 5)],
  ];
  // host bits past the prefix: 198.51.100.1 given a /24
  const hostBits = Buffer.from(good);
  hostBits.writeUInt8(24, 13 + 8);
  bad.push(['host bits', hostBits]);
  // a prefix length past 32
  const tooLong = Buffer.from(good);
  tooLong.writeUInt8(33, 13 + 8);
  bad.push(['prefix length', tooLong]);
  // two IPv4 entries out of order
  const twice = build(['198.51.100.1', '198.51.100.2']).entries.encode();
  const swapped = Buffer.from(twice);
  swapped.writeUInt32BE(0xc6336402, 13);
  swapped.writeUInt32BE(0xc6336401, 17);
  bad.push(['out of order', swapped]);
  // an IPv4-mapped IPv6 entry (its canonical form is IPv4)
  const mapped = build(['2001:db8::1']).entries.encode();
  mapped.writeUInt32BE(0, 13);
  mapped.writeUInt32BE(0, 17);
  mapped.writeUInt32BE(0xffff, 21);
  assert.equal(FeedEntries.decode(build(['2001:db8::1']).entries.encode(), 10).size, 1);
  bad.push(['mapped', mapped]);
  for (const [what, buf] of bad) assert.throws(() => FeedEntries.decode(buf, 1000), FeedDataError, what);
  assert.throws(() => FeedEntries.decode(good, 2), /3 entries, more than the 2 allowed/);
  assert.equal(FeedEntries.decode(good, 3).size, 3);
  assert.equal(FeedEntries.count(good), 3);
});

test('a network is split around protected ranges into CIDR pieces; one wholly protected is skipped', () => {
  const out: IpTarget[] = [];
  splitAround(t('203.0.113.0/24'), [t('203.0.113.77')], out);
  assert.deepEqual(
    out.map((x) => x.text),
    [
      '203.0.113.0/26',
      '203.0.113.64/29',
      '203.0.113.72/30',
      '203.0.113.76',
      '203.0.113.78/31',
      '203.0.113.80/28',
      '203.0.113.96/27',
      '203.0.113.128/25',
    ],
  );
  // the pieces cover every address but the protected one
  const covered = (n: number) => out.some((p) => contains(p, t(`203.0.113.${n}`)));
  for (let n = 0; n < 256; n++) assert.equal(covered(n), n !== 77, String(n));
  const none: IpTarget[] = [];
  splitAround(t('10.1.0.0/16'), [t('10.0.0.0/8')], none);
  assert.deepEqual(none, []);
  assert.deepEqual(
    halves(t('2001:db8::/32')).map((x) => x.text),
    ['2001:db8::/33', '2001:db8:8000::/33'],
  );
  // an IPv6 /32 around one host: one piece per bit, 96
  const six: IpTarget[] = [];
  splitAround(t('2001:db8::/32'), [t('2001:db8::1')], six);
  assert.equal(six.length, 96);
});

test("a node's view: its ignore list and never-ban rules, too-wide entries skipped, pieces refused by refusal()", () => {
  const cfg = loadConfig({
    env: { AMI_GUARD_POLICY_IGNOREIP: '127.0.0.0/8,::1,198.51.100.7,192.0.2.0/24', AMI_GUARD_POLICY_IGNORESELF: 'false' },
  });
  const policy = new Policy(cfg.policy);
  const raw = build([
    '198.51.100.0/24',
    '198.51.100.9',
    '192.0.2.5',
    '169.254.169.254',
    '10.0.0.0/7',
    '2001:db8::1',
    '127.0.0.0/8',
  ]).entries;
  const { entries, stats } = enforcedView(raw, policy);
  const got = texts(entries);
  assert.ok(!got.includes('198.51.100.0/24') && got.includes('198.51.100.128/25') && got.includes('198.51.100.6'));
  // 198.51.100.9 was folded into the /24 when pulled; a piece of the split /24 stands for it
  assert.ok(!got.includes('198.51.100.9') && got.some((x) => contains(t(x), t('198.51.100.9'))));
  assert.ok(got.includes('2001:db8::1'));
  for (const never of ['192.0.2.5', '169.254.169.254', '10.0.0.0/7', '127.0.0.0/8', '198.51.100.7']) assert.ok(!got.includes(never), never);
  for (const x of got) assert.equal(policy.refusal(t(x)), null, x);
  assert.deepEqual(stats, { refused: 3, split: 1, tooWide: 1 });
});

test('list lines: comments, blank lines, garbage, too-wide networks, a line longer than any address', () => {
  assert.equal(parseLine('  # comment'), undefined);
  assert.equal(parseLine(''), undefined);
  assert.equal(parseLine('; comment'), undefined);
  assert.equal(parseLine('198.51.100.1 # x')?.text, '198.51.100.1');
  assert.equal(parseLine('198.51.100.0/24;SBL123')?.text, '198.51.100.0/24');
  assert.equal(parseLine('198.51.100.1 2'), null);
  assert.equal(parseLine('198.51.100.1-198.51.100.9'), null);
  const p = new ListParser({ ipv4: 8, ipv6: 32 });
  // split across chunks anywhere, CRLF line ends, a 5 KB line of garbage
  const text = `198.51.100.1\r\n0.0.0.0/0\n::/0\n2001:db8::/16\n${'x'.repeat(5000)}\n198.51.100.2\nnot an address\n198.51.100.3`;
  const bytes = Buffer.from(text, 'latin1');
  for (let i = 0; i < bytes.length; i += 7) p.push(bytes.subarray(i, i + 7));
  const { entries, stats } = p.end();
  assert.deepEqual(texts(entries), ['198.51.100.1', '198.51.100.2', '198.51.100.3']);
  assert.deepEqual(stats, { lines: 7, garbage: 2, tooWide: 3, duplicates: 0, covered: 0 });
});

test("APIBAN's answers: a page, the end, a bad key, a rate limit, garbage", () => {
  assert.deepEqual(readPage({ ipaddress: ['198.51.100.1'], ID: '1700000001' }, 200, 'x'), {
    kind: 'page',
    ips: ['198.51.100.1'],
    id: '1700000001',
  });
  assert.deepEqual(readPage({ ipaddress: ['no new bans'], ID: 'none' }, 400, 'x'), { kind: 'end' });
  const fails: Array<[unknown, number, string]> = [
    [{ ID: 'unauthorized' }, 403, 'unauthorized'],
    [{ ipaddress: 'rate limit exceeded' }, 400, 'rate-limit'],
    [{ ipaddress: [] }, 429, 'rate-limit'],
    [{ ipaddress: ['198.51.100.1'] }, 200, 'garbage'],
    [{ ipaddress: ['198.51.100.1'], ID: 'x y' }, 200, 'garbage'],
    [{ ipaddress: '198.51.100.1', ID: '17' }, 200, 'garbage'],
    [[1, 2], 200, 'garbage'],
    [{ ipaddress: [], ID: '17' }, 503, 'fetch'],
  ];
  for (const [json, status, kind] of fails) {
    assert.throws(
      () => readPage(json, status, 'x'),
      (err: unknown) => err instanceof FeedError && err.kind === kind,
      JSON.stringify(json),
    );
  }
});
