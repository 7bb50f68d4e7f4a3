// Hostile fields into the event parser and the policy. RemoteAddress decides what gets banned, so every accepted
// event is checked against an independent reading of its address: IPv4 by hand (strict dotted quad), IPv6 by the
// WHATWG URL parser (which prints RFC 5952 text), IPv4-mapped IPv6 folded to IPv4, networks matched on BigInts.
// Neither shares code with src/net/ip.ts. Messages go through the real frame reader as bytes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { readFrame, type FrameReading } from '../../src/events/normalise.js';
import type { SecurityEvent } from '../../src/events/types.js';
import { AmiFrameReader } from '../../src/ami/frame-reader.js';
import { parseAddress } from '../../src/net/ip.js';
import { Policy } from '../../src/policy/policy.js';
import { loadConfig } from '../../src/config/load.js';
import { DEFAULT_WEIGHTS } from '../../src/config/schema.js';
import { SECURITY_KINDS, UNKNOWN_KIND } from '../../src/events/schema.js';

let cases = 0;
const started = performance.now();
after(() => {
  console.log(`fuzz normaliser: ${cases} cases in ${Math.round(performance.now() - started)} ms`);
});

// ---- the oracle ----

interface Addr {
  readonly family: 4 | 6;
  readonly text: string;
  readonly value: bigint;
}

const DOTTED = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;
const MAPPED = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

function v4(octets: readonly number[]): Addr {
  return { family: 4, text: octets.join('.'), value: octets.reduce((v, o) => (v << 8n) | BigInt(o), 0n) };
}

function v6Value(canonical: string): bigint {
  const [head, tail] = canonical.includes('::') ? canonical.split('::') : [canonical, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((v, g) => (v << 16n) | BigInt(`0x${g}`), 0n);
}

function oracle(text: string): Addr | null {
  const m = DOTTED.exec(text);
  if (m) {
    const octets = m.slice(1).map(Number);
    return octets.every((o) => o <= 255) ? v4(octets) : null;
  }
  if (!text.includes(':') || !/^[0-9A-Fa-f:.]+$/.test(text)) return null;
  let canonical: string;
  try {
    canonical = new URL(`http://[${text}]/`).hostname.slice(1, -1);
  } catch {
    return null;
  }
  const mapped = MAPPED.exec(canonical);
  if (mapped) {
    const [hi, lo] = [parseInt(mapped[1]!, 16), parseInt(mapped[2]!, 16)];
    return v4([hi >> 8, hi & 255, lo >> 8, lo & 255]);
  }
  return { family: 6, text: canonical, value: v6Value(canonical) };
}

/** never-ban.ts's fixed list: unspecified, loopback, multicast, broadcast and link-local (169.254/16, fe80::/10) */
function neverBanned(a: Addr): boolean {
  if (a.family === 4) {
    const first = Number(a.value >> 24n);
    const link = a.value >> 16n === 0xa9fen;
    return first === 0 || first === 127 || (first >= 224 && first <= 239) || a.value === 0xffffffffn || link;
  }
  return a.value === 0n || a.value === 1n || a.value >> 120n === 0xffn || a.value >> 118n === 0x3fan;
}

interface Net {
  readonly family: 4 | 6;
  readonly value: bigint;
  readonly bits: number;
}

function net(entry: string): Net {
  const [addr, bits] = entry.split('/');
  const a = oracle(addr!)!;
  return { family: a.family, value: a.value, bits: bits === undefined ? (a.family === 4 ? 32 : 128) : Number(bits) };
}

function inNet(a: Addr, n: Net): boolean {
  if (a.family !== n.family) return false;
  const shift = BigInt((a.family === 4 ? 32 : 128) - n.bits);
  return a.value >> shift === n.value >> shift;
}

// ---- the policies under test ----

const defaultPolicy = new Policy(loadConfig({ env: {} }).policy);
const IGNORE = ['127.0.0.0/8', '::1', '10.0.0.0/8', '192.168.1.7', '198.51.100.0/24', '2001:db8:aa::/48', 'fd00::66'];
const widePolicy = new Policy(loadConfig({ env: { AMI_GUARD_POLICY_IGNOREIP: IGNORE.join(',') } }).policy);
const policies: Array<{ policy: Policy; ignore: Net[] }> = [
  { policy: defaultPolicy, ignore: ['127.0.0.0/8', '::1'].map(net) },
  { policy: widePolicy, ignore: IGNORE.map(net) },
];
// every kind that counts by default
const FAILURES = new Set(
  Object.entries(DEFAULT_WEIGHTS)
    .filter(([, w]) => w > 0)
    .map(([k]) => k),
);

/** Everything an accepted event must satisfy, checked against the oracle's reading of `candidate`. */
function checkAccepted(event: SecurityEvent, candidate: string | undefined, familyTag: string | undefined): void {
  // what the event carries is exactly what the parser makes of its own text: no other spelling survives
  assert.deepEqual(parseAddress(event.address.text), event.address);
  const expected = candidate === undefined ? null : oracle(candidate);
  assert.ok(expected, `accepted ${JSON.stringify(candidate)}, which is not an address`);
  assert.equal(event.address.text, expected.text, `${JSON.stringify(candidate)} read as ${event.address.text}`);
  assert.equal(event.address.family, expected.family);
  if (familyTag === 'IPV4') assert.equal(expected.family, 4, 'an IPV4 tag on an IPv6 address is forged');
  assert.match(event.kind, /^[A-Za-z][A-Za-z0-9]{0,63}$/);
  assert.match(event.service, /^[A-Z0-9_-]{1,32}$/);
  assert.ok(event.accountId.length <= 65 && !/[\u0000-\u001f\u007f-\u009f]/.test(event.accountId));
  for (const { policy, ignore } of policies) {
    const d = policy.decide(event);
    if (neverBanned(expected) || ignore.some((n) => inNet(expected, n))) {
      assert.equal(d.action, 'skip', `${expected.text} would be counted`);
    } else if (FAILURES.has(event.kind)) {
      assert.equal(d.action, 'count', `${expected.text} is a bannable source`);
    }
  }
}

/** The documented rule: what lies between the second and the last `/`, or the middle of a three-part value. */
function candidateOf(remote: string): { candidate: string | undefined; tag: string | undefined; wellFormed: boolean } {
  const parts = remote.split('/');
  const candidate = parts.length >= 4 ? parts.slice(2, -1).join('/') : parts.length === 3 ? parts[1] : undefined;
  // Asterisk writes the tag in capitals, the transport in letters (or nothing), the port in digits
  const wellFormed = parts.length >= 3 && /^\d+$/.test(parts.at(-1)!) && (parts.length === 3 || /^[A-Za-z]*$/.test(parts[1]!));
  return { candidate, tag: parts[0], wellFormed };
}

type Message = Array<readonly [string, string]>;

/** A value of each header for events built here, in the format Asterisk writes. */
const VALUES: Record<string, string> = {
  EventTV: '2026-11-21T19:15:48.554+0000',
  Severity: 'Error',
  Service: 'PJSIP',
  EventVersion: '1',
  AccountID: '6001',
  SessionID: 'call-1',
  LocalAddress: 'IPV4/UDP/198.18.0.1/5060',
  UsingPassword: '1',
  Challenge: '1/abc',
  Response: '0123456789abcdef0123456789abcdef',
  ExpectedResponse: '',
  RequestType: 'REGISTER',
  AuthMethod: 'plain',
  ExpectedAddress: 'IPV4/UDP/198.18.0.2/5060',
  AttemptedTransport: 'TCP',
};

function serialise(msg: Message): Buffer {
  return Buffer.from(`${msg.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`, 'utf8');
}

/** Reads one message's bytes as the daemon would: frame reader, then the event parser. */
function normalise(bytes: Buffer): FrameReading | null {
  let reading: FrameReading | null = null;
  new AmiFrameReader((f) => (reading ??= readFrame(f, 0))).push(bytes);
  return reading;
}

function eventOf(r: FrameReading | null): SecurityEvent | null {
  return r?.type === 'event' ? r.event : null;
}

// ---- generators ----

const octet = fc.integer({ min: 0, max: 255 });
const quad = (first: fc.Arbitrary<number>) => fc.tuple(first, octet, octet, octet).map((o) => o.join('.'));
const hex4 = (n: number) => n.toString(16);

/** IPv4 addresses from the classes that matter, and any at all. */
const ipv4 = fc.oneof(
  fc.ipV4(),
  quad(fc.constant(127)),
  quad(fc.constant(0)),
  quad(fc.integer({ min: 224, max: 239 })),
  quad(fc.constantFrom(10, 198, 192, 240, 255)),
  fc.constantFrom('255.255.255.255', '0.0.0.0', '198.51.100.7', '192.168.1.7', '198.18.0.11', '203.0.113.9'),
);

/** The same IPv4 address written as IPv4-mapped IPv6, in several spellings. */
function mappedSpellings(a: string): string[] {
  const o = a.split('.').map(Number);
  const hi = hex4((o[0]! << 8) | o[1]!);
  const lo = hex4((o[2]! << 8) | o[3]!);
  return [
    `::ffff:${a}`,
    `::FFFF:${a}`,
    `0:0:0:0:0:ffff:${a}`,
    `0000:0000:0000:0000:0000:FFFF:${a}`,
    `::ffff:${hi}:${lo}`,
    `0::ffff:${hi.toUpperCase()}:${lo}`,
    `0:0:0:0:0:ffff:${hi}:${lo}`,
  ];
}

const ipv6 = fc.oneof(
  fc.ipV6(),
  fc.constantFrom(
    '::',
    '::1',
    '0:0:0:0:0:0:0:1',
    '0000::0001',
    'ff02::1',
    'FF05::1:3',
    'fd00::66',
    'fd00::67',
    '2001:db8:aa::1',
    '2001:db8:ab::1',
    '::1.2.3.4',
    '::127.0.0.1',
    '::0.0.0.1',
    '64:ff9b::7f00:1',
    '::ffff:0:127.0.0.1',
  ),
  fc
    .tuple(fc.integer({ min: 0xff00, max: 0xffff }), fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 3 }))
    .map(([first, rest]) => `${hex4(first)}::${rest.map(hex4).join(':')}`),
  ipv4.chain((a) => fc.constantFrom(...mappedSpellings(a))),
);

/** Text that is not an address, or only almost: every one must be refused (or, if the oracle reads it, agree). */
const hostile = fc.oneof(
  fc.constantFrom(
    '999.1.1.1',
    '1.2.3',
    '1.2.3.4.5',
    '01.2.3.4',
    '1.2.3.04',
    '0x7f.0.0.1',
    '127.1',
    '0177.0.0.1',
    '2130706433',
    ' 1.2.3.4',
    '1.2.3.4 ',
    '[::1]',
    '[2001:db8::1]',
    'fe80::1%eth0',
    'fe80::1%25eth0',
    '::ffff:01.2.3.4',
    '::ffff:999.0.0.1',
    '::ffff:1.2.3',
    '::ffff:010.0.0.1',
    '1::2::3',
    ':::',
    '1:2:3:4:5:6:7:8:9',
    '12345::1',
    'localhost',
    '',
    '1.2.3.4; flush ruleset',
    '198.51.100.7"; delete table inet ami_guard; "',
    '\u0000127.0.0.1',
    '１.２.３.４',
    '1.2.3.4\u0000',
    'g::1',
    '::ffff:1.2.3.4.5',
  ),
  fc.string({ unit: 'binary', maxLength: 50 }),
  fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:.'.split('')), maxLength: 45 }),
  fc.ipV4Extended(),
);

const address = fc.oneof({ weight: 3, arbitrary: ipv4 }, { weight: 3, arbitrary: ipv6 }, { weight: 2, arbitrary: hostile });
const familyTag = fc.constantFrom('IPV4', 'IPV6', 'ipv4', 'Ipv6', 'IPV5', '', 'IPV4 ');
const transport = fc.constantFrom('UDP', 'TCP', 'TLS', 'WS', 'WSS', 'udp', '', 'UDP/extra');
const port = fc.constantFrom('5060', '0', '65535', '999999', '', 'abc', '5060/5061');
const remoteAddress = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(familyTag, transport, address, port).map(([f, t, a, p]) => `${f}/${t}/${a}/${p}`) },
  { weight: 1, arbitrary: fc.tuple(familyTag, address, port).map(([f, a, p]) => `${f}/${a}/${p}`) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 150 }) },
);

const kind = fc.oneof(
  fc.constantFrom('InvalidAccountID', 'ChallengeResponseFailed', 'InvalidPassword', 'FailedACL', 'ChallengeSent', 'SuccessfulAuth'),
  fc.string({ maxLength: 70 }),
);

/** A security event as Asterisk writes it (its kind's required headers, in order), with this RemoteAddress. */
function eventMessage(remote: string, k: string): Buffer {
  const schema = Object.hasOwn(SECURITY_KINDS, k) ? SECURITY_KINDS[k]! : UNKNOWN_KIND;
  return serialise([
    ['Event', k],
    ['Privilege', 'security,all'],
    ...schema.required.map((h) => [h, h === 'RemoteAddress' ? remote : VALUES[h]!] as const),
  ]);
}

/** Security events recorded from a real Asterisk under attack, as header lists. */
const recorded: Message[] = readdirSync('test/fixtures/ami')
  // lab-injection holds events broken on purpose (test/unit/normalise reads it)
  .filter((f) => f.endsWith('.jsonl') && !f.startsWith('lab-injection'))
  .flatMap((f) => readFileSync(join('test/fixtures/ami', f), 'utf8').split('\n'))
  .filter((l) => l.trim() !== '')
  .map((l) => (JSON.parse(l) as { raw: string }).raw)
  .filter((raw) => raw.startsWith('Event: ') && /^Privilege: security/m.test(raw))
  .map((raw) =>
    raw
      .split('\r\n')
      .filter((line) => line !== '')
      .map((line) => {
        const c = line.indexOf(': ');
        return [line.slice(0, c), line.slice(c + 2)] as const;
      }),
  );

// ---- properties ----

test('the recorded security events are there to mutate, and each is read as an event', () => {
  assert.ok(recorded.length > 1000, `${recorded.length} events`);
  for (const m of recorded) assert.equal(normalise(serialise(m))?.type, 'event', JSON.stringify(m));
});

test('every RemoteAddress: never throws; accepted means the oracle reads the same address; policy agrees', () => {
  fc.assert(
    fc.property(remoteAddress, kind, (remote, k) => {
      cases++;
      const r = normalise(eventMessage(remote, k));
      const e = eventOf(r);
      const { candidate, tag, wellFormed } = candidateOf(remote);
      if (e) checkAccepted(e, candidate, tag);
      else if (
        r?.type === 'invalid' &&
        /^[A-Za-z][A-Za-z0-9]{0,63}$/.test(k) &&
        remote.length <= 128 &&
        wellFormed &&
        (tag === 'IPV4' || tag === 'IPV6')
      ) {
        // refused although well formed: only when the oracle also refuses, or the tag lies about the family
        // (Asterisk writes an IPv4 source as a dotted quad under IPV4, never in an IPv6 spelling)
        const o = candidate === undefined ? null : oracle(candidate);
        assert.ok(
          o === null || (tag === 'IPV4' && (o.family === 6 || candidate!.includes(':'))),
          `${JSON.stringify(remote)} refused (${r.reason})`,
        );
      }
    }),
    { numRuns: 40_000 },
  );
});

test('real recorded events with a mutated RemoteAddress', () => {
  const edit = fc.tuple(
    fc.nat(),
    fc.constantFrom('insert', 'delete', 'replace'),
    fc.constantFrom(...'/:.0123456789abcdefF% []\u0000\r;"x'.split('')),
  );
  const mutation = fc.oneof(
    fc.array(edit, { minLength: 1, maxLength: 4 }).map((edits) => (value: string) => {
      let s = value;
      for (const [at, op, ch] of edits) {
        const i = s.length === 0 ? 0 : at % (s.length + (op === 'insert' ? 1 : 0));
        s =
          op === 'insert'
            ? s.slice(0, i) + ch + s.slice(i)
            : op === 'delete'
              ? s.slice(0, i) + s.slice(i + 1)
              : s.slice(0, i) + ch + s.slice(i + 1);
      }
      return s;
    }),
    fc.tuple(address, familyTag).map(([a, f]) => (value: string) => {
      const parts = value.split('/');
      return [f || parts[0], parts[1], a, parts.at(-1)].join('/');
    }),
    remoteAddress.map((r) => () => r),
  );
  fc.assert(
    fc.property(fc.constantFrom(...recorded), mutation, fc.boolean(), (original, mutate, repeat) => {
      cases++;
      const at = original.findIndex(([k]) => k === 'RemoteAddress');
      const before = original[at]![1];
      const remote = mutate(before);
      const msg: Message = [...original];
      msg[at] = ['RemoteAddress', remote];
      // a repeated RemoteAddress is a forged line: never an event
      if (repeat) msg.splice(at, 0, ['RemoteAddress', before]);
      const r = normalise(serialise(msg));
      const e = eventOf(r);
      if (repeat) assert.equal(e, null, 'a message with two RemoteAddress lines was read as an event');
      else if (e && !/[\r\n]/.test(remote)) {
        const { candidate, tag } = candidateOf(remote);
        checkAccepted(e, candidate, tag);
      }
    }),
    { numRuns: 30_000 },
  );
});

test('addresses that must never be counted: loopback, unspecified, multicast, broadcast, mapped loopback, ignore-listed', () => {
  const never = fc.oneof(
    quad(fc.constant(127)),
    quad(fc.constant(0)),
    quad(fc.integer({ min: 224, max: 239 })),
    fc.constantFrom('255.255.255.255', '::', '::1', '0:0:0:0:0:0:0:1', '::0:1', 'ff02::1', 'FF0E::1'),
    fc.tuple(fc.integer({ min: 0xff00, max: 0xffff }), fc.integer({ min: 0, max: 0xffff })).map(([a, b]) => `${hex4(a)}::${hex4(b)}`),
    quad(fc.constantFrom(127, 0, 224, 239)).chain((a) => fc.constantFrom(...mappedSpellings(a))),
  );
  const ignored = fc.oneof(
    quad(fc.constant(10)),
    fc.constantFrom('192.168.1.7', 'fd00::66', 'FD00:0::66', '::ffff:192.168.1.7'),
    fc.tuple(octet).map(([o]) => `198.51.100.${o}`),
    fc.integer({ min: 0, max: 0xffff }).map((g) => `2001:db8:aa:${hex4(g)}::1`),
  );
  fc.assert(
    fc.property(fc.oneof(never, ignored), transport, port, fc.constantFrom(...FAILURES), (a, t, p, k) => {
      cases++;
      const fam = a.includes(':') ? 'IPV6' : 'IPV4';
      for (const remote of [`${fam}/${t}/${a}/${p}`, `${fam}/${a}/${p}`]) {
        const e = eventOf(normalise(eventMessage(remote, k)));
        if (!e) continue;
        assert.equal(widePolicy.decide(e).action, 'skip', `${remote} would be counted`);
      }
    }),
    { numRuns: 10_000 },
  );
  const fixed = [
    'IPV4/UDP/999.1.1.1/5060',
    'IPV6/UDP/::ffff:127.0.0.1/5060',
    'IPV4/UDP/0.0.0.0/0',
    'IPV4/UDP/224.0.0.1/5060',
    'IPV4/UDP/255.255.255.255/5060',
    'IPV6/UDP/::1/5060',
    'IPV6/UDP/::/5060',
    'IPV6/UDP/ff02::1/5060',
    'IPV6/TCP/::ffff:7f00:1/40000',
    'IPV4/UDP/127.0.0.1/5060',
    'IPV6/UDP/::ffff:0.0.0.0/5060',
    'IPV6/UDP/::ffff:224.0.0.251/5353',
  ];
  for (const remote of fixed) {
    const e = eventOf(normalise(eventMessage(remote, 'InvalidPassword')));
    assert.ok(!e || defaultPolicy.decide(e).action === 'skip', `${remote} would be counted`);
  }
});

test('IPv4-mapped IPv6 normalises to the same address as the IPv4 it maps, and gets the same decision', () => {
  fc.assert(
    fc.property(ipv4, fc.constantFrom(...FAILURES), (a, k) => {
      cases++;
      const plain = eventOf(normalise(eventMessage(`IPV4/UDP/${a}/5060`, k)));
      assert.ok(plain);
      for (const spelling of mappedSpellings(a)) {
        const mapped = eventOf(normalise(eventMessage(`IPV6/UDP/${spelling}/5060`, k)));
        assert.ok(mapped, spelling);
        assert.deepEqual(mapped.address, plain.address, spelling);
        for (const { policy } of policies) assert.deepEqual(policy.decide(mapped), policy.decide(plain));
      }
    }),
    { numRuns: 10_000 },
  );
  const a = eventOf(normalise(eventMessage('IPV6/UDP/::ffff:198.18.0.11/5060', 'InvalidPassword')));
  const b = eventOf(normalise(eventMessage('IPV4/UDP/198.18.0.11/5060', 'InvalidPassword')));
  assert.ok(a && b);
  assert.equal(a.address.text, '198.18.0.11');
  assert.equal(a.address.family, 4);
  assert.deepEqual(a.address, b.address);
});

test("whole messages of random lines: never throws, whatever is accepted is sound and in Asterisk's order", () => {
  const key = fc.oneof(
    fc.constantFrom(
      'Event',
      'Privilege',
      'RemoteAddress',
      'LocalAddress',
      'Service',
      'AccountID',
      'EventTV',
      'Severity',
      'UsingPassword',
      'SessionID',
      'EventVersion',
      'Challenge',
      '__proto__',
      'constructor',
      'toString',
      '',
    ),
    fc.string({ maxLength: 12 }),
  );
  const value = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 80 }),
    remoteAddress,
    fc.constantFrom(
      'security,all',
      'security',
      'system,all',
      'SECURITY',
      ' security ',
      'InvalidPassword',
      '',
      'Error',
      'PJSIP',
      '2026-11-21T19:15:48.554+0000',
    ),
  );
  const message = fc.oneof(
    fc.array(fc.tuple(key, value), { maxLength: 14 }),
    // a recorded event with one random line put somewhere: an injected line
    fc.tuple(fc.constantFrom(...recorded), fc.nat(), key, value).map(([m, at, k, v]) => {
      const out: Message = [...m];
      out.splice(2 + (at % (m.length - 1)), 0, [k, v]);
      return out;
    }),
  );
  fc.assert(
    fc.property(message, (msg) => {
      cases++;
      const bytes = Buffer.from(`${msg.map(([k, v]) => `${k}: ${v}`.replaceAll('\r\n', ' ')).join('\r\n')}\r\n\r\n`, 'utf8');
      const e = eventOf(normalise(bytes));
      if (!e) return;
      // accepted: the genuine RemoteAddress line is the one right after LocalAddress, which follows SessionID
      const lines = bytes.toString('utf8').split('\r\n');
      const at = lines.findIndex(
        (l, i) => l.startsWith('RemoteAddress: ') && lines[i - 1]?.startsWith('LocalAddress: ') && lines[i - 2]?.startsWith('SessionID: '),
      );
      assert.ok(at > 0, "accepted without Asterisk's address lines");
      assert.equal(lines.filter((l) => l.startsWith('RemoteAddress: ')).length, 1, 'accepted with a second RemoteAddress');
      const { candidate, tag } = candidateOf(lines[at]!.slice('RemoteAddress: '.length));
      checkAccepted(e, candidate, tag);
    }),
    { numRuns: 15_000 },
  );
});
