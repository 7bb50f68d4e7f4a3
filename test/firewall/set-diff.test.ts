// Pure tests of the restart's set reading (set-dump.ts) and its difference from the store's bans (set-diff.ts): the
// dumps here are built byte by byte as the kernel sends them, so what the sets may hold that we never wrote (odd keys,
// flags, mapped addresses, garbage) is covered without a kernel. The real kernel's dumps: nft-restart.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTarget, type IpTarget } from '../../src/net/ip.js';
import { diffSets, endsInTime, LATE_MS, type KernelPicture } from '../../src/firewall/set-diff.js';
import { hostKey, NO_END, readHostSetDump } from '../../src/firewall/set-dump.js';

const t = (text: string): IpTarget => parseTarget(text)!;

function nla(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const head = Buffer.alloc(4);
  head.writeUInt16LE(len, 0);
  head.writeUInt16LE(type, 2);
  return Buffer.concat([head, payload, Buffer.alloc((4 - (len % 4)) % 4)]);
}

const be32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const be64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};

interface Elem {
  key: Buffer | null;
  expiresMs?: number;
  flags?: number;
  comment?: string;
}

function element(e: Elem): Buffer {
  const parts: Buffer[] = [];
  if (e.key) parts.push(nla(0x8000 | 1, nla(1, e.key)));
  if (e.flags !== undefined) parts.push(nla(3, be32(e.flags)));
  if (e.expiresMs !== undefined) parts.push(nla(4, be64(3_600_000)), nla(5, be64(e.expiresMs)));
  if (e.comment) parts.push(nla(6, Buffer.from(e.comment)));
  return nla(0x8000 | 1, Buffer.concat(parts));
}

/** one datagram stamped `stamp` holding a NEWSETELEM of these elements at generation `gen`, then DONE */
function datagram(stamp: number, gen: number, elems: Elem[], done = true): Buffer {
  const body = Buffer.concat([
    Buffer.from([1, 0, gen >> 8, gen & 255]),
    nla(1, Buffer.from('ami_guard\0')),
    nla(2, Buffer.from('banned_v4\0')),
    nla(0x8000 | 3, Buffer.concat(elems.map(element))),
  ]);
  const msg = (type: number, payload: Buffer): Buffer => {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(16 + payload.length, 0);
    h.writeUInt16LE(type, 4);
    return Buffer.concat([h, payload]);
  };
  const data = Buffer.concat([msg((10 << 8) | 12, body), ...(done ? [msg(3, Buffer.alloc(4))] : [])]);
  const head = Buffer.alloc(12);
  head.writeBigUInt64LE(BigInt(stamp), 0);
  head.writeUInt32LE(data.length, 8);
  return Buffer.concat([head, data]);
}

test('a host set dump: each element with its end from its datagram stamp; what is not a host of the family is skipped', () => {
  const v4 = (a: string): Buffer => be32(t(a).words[0]!);
  const dump = Buffer.concat([
    datagram(1_000_000, 7, [{ key: v4('198.51.100.1'), expiresMs: 5_000 }, { key: v4('198.51.100.2') }], false),
    datagram(1_000_400, 7, [
      { key: v4('198.51.100.3'), expiresMs: 10, comment: 'x" }; flush ruleset' },
      { key: v4('198.51.100.4'), expiresMs: 1, flags: 1 },
      { key: Buffer.alloc(16), expiresMs: 1 },
      { key: null, expiresMs: 1 },
    ]),
  ]);
  const d = readHostSetDump(dump, 4);
  assert.equal(d.generation, 7);
  assert.deepEqual(
    [...d.v4],
    [
      [t('198.51.100.1').words[0]! | 0, 1_005_000],
      [t('198.51.100.2').words[0]! | 0, NO_END],
      [t('198.51.100.3').words[0]! | 0, 1_000_410],
    ],
  );
  assert.deepEqual(d.skipped, ['key of 4 bytes, flags 1', 'key of 16 bytes', 'no key']);
});

test('an IPv6 dump keeps real IPv6 hosts and skips an IPv4-mapped one', () => {
  const words = (a: string): Buffer => Buffer.concat(t(a).words.map(be32));
  const mapped = Buffer.concat([be32(0), be32(0), be32(0xffff), be32(0xc6336401)]);
  const d = readHostSetDump(
    datagram(5, 1, [
      { key: words('2001:db8::1'), expiresMs: 1 },
      { key: mapped, expiresMs: 1 },
    ]),
    6,
  );
  assert.deepEqual([...d.v6.keys()], [hostKey(t('2001:db8::1').words)]);
  assert.equal(d.v6.get(hostKey(t('2001:db8::1').words))!.target.text, '2001:db8::1');
  assert.equal(d.skipped.length, 1);
});

test('bytes that are no dump are refused, never half read', () => {
  const good = datagram(5, 1, [{ key: be32(1), expiresMs: 1 }]);
  assert.throws(() => readHostSetDump(good.subarray(0, good.length - 3), 4), /truncated/);
  const twoGens = Buffer.concat([datagram(5, 1, [], false), datagram(6, 2, [])]);
  assert.throws(() => readHostSetDump(twoGens, 4), /two ruleset generations/);
  const bad = Buffer.from(good);
  bad.writeUInt16LE(9999, 12 + 16 + 4); // the first attribute (the table name) longer than its message
  assert.throws(() => readHostSetDump(bad, 4), /length/);
});

test('an element is in time from the store end to LATE_MS after it, never before it', () => {
  assert.ok(endsInTime(1_000 + 60_000, 1_000, 60_000));
  assert.ok(endsInTime(1_000 + 60_000 + LATE_MS, 1_000, 60_000));
  assert.ok(!endsInTime(1_000 + 60_000 - 1, 1_000, 60_000));
  assert.ok(!endsInTime(1_000 + 60_000 + LATE_MS + 1, 1_000, 60_000));
  assert.ok(!endsInTime(NO_END, 1_000, 60_000));
});

test('the difference: removals, additions, refreshes, and a network set reloaded only when it differs', () => {
  const at = 1_000_000;
  const picture = (): KernelPicture => ({
    v4: new Map([
      [t('198.51.100.1').words[0]! | 0, at + 60_000],
      [t('198.51.100.2').words[0]! | 0, at + 60_000],
      [t('198.51.100.3').words[0]! | 0, at + 1_000],
    ]),
    v6: new Map([[hostKey(t('2001:db8::2').words), { target: t('2001:db8::2'), end: at + 60_000 }]]),
    nets: new Map([[4, [{ target: t('203.0.113.0/24'), end: at + 60_000 }]]]),
  });
  const bans = [
    { target: t('198.51.100.1'), timeoutMs: 60_000 },
    { target: t('198.51.100.3'), timeoutMs: 60_000 },
    { target: t('198.51.100.4'), timeoutMs: 60_000 },
    { target: t('203.0.113.0/24'), timeoutMs: 60_000 },
  ];
  const c = diffSets(picture(), bans, at);
  assert.deepEqual(
    c.remove.map((x) => x.text),
    ['198.51.100.2', '2001:db8::2'],
  );
  assert.deepEqual(
    c.add.map((b) => b.target.text),
    ['198.51.100.4'],
  );
  assert.deepEqual(
    c.refresh.map((b) => b.target.text),
    ['198.51.100.3'],
  );
  assert.equal(c.reload.size, 0);
  assert.equal(c.added, 1);
  const wider = diffSets(picture(), [...bans.slice(0, 3), { target: t('203.0.112.0/23'), timeoutMs: 60_000 }], at);
  assert.deepEqual(
    [...wider.reload.get(4)!].map((b) => b.target.text),
    ['203.0.112.0/23'],
  );
  assert.deepEqual(
    wider.removed.map((x) => x.text),
    ['198.51.100.2', '2001:db8::2', '203.0.113.0/24'],
  );
  assert.equal(wider.added, 2);
});
