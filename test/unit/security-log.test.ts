// Asterisk's security log as a second way into the dry run: the same events, the same injections and the same
// decisions as the AMI recording of the same moments, and the AMI parser's fail-closed rule against fields an
// attacker wrote into a value (a quote, a comma and a name are enough in this format; a line break, in AccountID).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { AmiFrameReader } from '../../src/ami/frame-reader.js';
import { isRecordedReply } from '../../src/ami/message.js';
import { Intake, type IntakeBatch } from '../../src/events/intake.js';
import { SecurityLogIntake, MAX_LINE_BYTES } from '../../src/events/log-intake.js';
import { readSecurityRecord } from '../../src/events/security-log.js';
import { SECURITY_KINDS } from '../../src/events/schema.js';
import type { Injection, SecurityEvent } from '../../src/events/types.js';
import { replayFile } from '../../src/cli/commands/replay.js';
import { cli } from '../support/cli.js';

const FIXTURES = 'test/fixtures/ami';
/** every scenario recorded both ways: AMI and security.log of the same Asterisk over the same seconds */
const BOTH = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.truth.json'))
  .map((f) => f.replace('.truth.json', ''))
  .filter((s) => existsSync(join(FIXTURES, `${s}.security.log`)))
  .sort();

interface Read {
  events: SecurityEvent[];
  injections: Injection[];
}

function readLog(...chunks: Array<string | Buffer>): Read & { intake: SecurityLogIntake } {
  const batches: IntakeBatch[] = [];
  const intake = new SecurityLogIntake((b) => batches.push(b));
  for (const c of chunks) intake.push(typeof c === 'string' ? Buffer.from(c, 'utf8') : c);
  intake.end();
  return { events: batches.flatMap((b) => b.events), injections: batches.flatMap((b) => b.injections), intake };
}

function readAmi(bytes: Buffer): Read {
  const batches: IntakeBatch[] = [];
  const intake = new Intake((b) => batches.push(b));
  const reader = new AmiFrameReader((f) => (isRecordedReply(f) ? intake.boundary() : intake.frame(f, 0)), { banner: 'any' });
  reader.push(bytes);
  intake.reset();
  return { events: batches.flatMap((b) => b.events), injections: batches.flatMap((b) => b.injections) };
}

const eventKey = (e: SecurityEvent): string =>
  [e.kind, e.service, e.address.text, e.accountId, e.sessionId, e.eventTv, e.eventTime, e.severity, e.usingPassword].join('|');

test('every scenario has both files, lab-injection among them', () => {
  assert.ok(BOTH.length >= 11, BOTH.join(' '));
  assert.ok(BOTH.includes('lab-injection'));
  for (const s of BOTH) assert.ok(readdirSync(FIXTURES).includes(`${s}.ami`), s);
});

test("security.log gives the AMI recording's events, one for one and in order, and its injections from the same sources", () => {
  for (const s of BOTH) {
    const log = readLog(readFileSync(join(FIXTURES, `${s}.security.log`)));
    const ami = readAmi(readFileSync(join(FIXTURES, `${s}.ami`)));
    assert.ok(ami.events.length > 0, s);
    assert.deepEqual(log.events.map(eventKey), ami.events.map(eventKey), s);
    assert.deepEqual(
      log.injections.map((i) => `${i.kind}|${i.source?.text}`),
      ami.injections.map((i) => `${i.kind}|${i.source?.text}`),
      s,
    );
    assert.equal(log.intake.counters.oversized, 0, s);
  }
});

test('replay of security.log decides as replay of the AMI recording: the same addresses banned, the same counts', async () => {
  for (const s of BOTH) {
    const log = await replayFile(join(FIXTURES, `${s}.security.log`), {});
    const ami = await replayFile(join(FIXTURES, `${s}.ami`), {});
    assert.equal(log.source, 'security-log');
    assert.equal(log.securityEvents, ami.securityEvents, s);
    assert.equal(log.injections, ami.injections, s);
    assert.equal(log.invalid, ami.invalid, s);
    // The log reports an injection at its own record; AMI when the next message of Asterisk's closes it, a
    // millisecond or so later: the ban's time may differ by that much, nothing else may.
    const sameBut = (a: (typeof log.addresses)[number]) => ({
      ...a,
      bannedAt: a.reason === 'injection' ? a.bannedAt?.slice(0, 19) : a.bannedAt,
    });
    assert.deepEqual(log.addresses.map(sameBut), ami.addresses.map(sameBut), s);
  }
  // and the recordings hold bans of every kind the policy makes
  const reasons = new Set<string>();
  for (const s of BOTH)
    for (const a of (await replayFile(join(FIXTURES, `${s}.security.log`), {})).addresses) if (a.reason) reasons.add(a.reason);
  assert.deepEqual([...reasons].sort(), ['failures', 'injection', 'scanner']);
});

test("the lab's real injections: the forged addresses are never read, each genuine source is", () => {
  const truth = JSON.parse(readFileSync(join(FIXTURES, 'lab-injection.truth.json'), 'utf8')) as {
    forged: string[];
    sources: Array<{ ip: string; injections?: number }>;
  };
  const { events, injections } = readLog(readFileSync(join(FIXTURES, 'lab-injection.security.log')));
  const seen = [...events.map((e) => e.address.text), ...injections.map((i) => i.source?.text)];
  for (const forged of truth.forged) assert.ok(!seen.includes(forged), forged);
  for (const s of truth.sources) {
    assert.equal(injections.filter((i) => i.source?.text === s.ip).length, s.injections ?? 0, s.ip);
  }
  // pjsip wrote the From user's CR LF raw: the record's rest is on a line of its own
  assert.ok(injections.every((i) => i.sign === 'control-characters' && i.kind === 'InvalidAccountID'));
});

test("the lab's Asterisk writes a Call-ID's quotes into security.log as they come: the forged fields are not read", () => {
  // lab-callid: `ami-guard record` of the lab's Asterisk 22.10.1 (.ami) and its security.log over the same seconds,
  // while 198.18.0.11 sent REGISTERs with CR LF in the From user (3 forged RemoteAddress, 2 split events) and 3 with
  // the Call-ID `qN",LocalAddress="IPV4/UDP/198.18.0.1/5060",RemoteAddress="IPV4/UDP/203.0.113.78/5060`
  const log = readLog(readFileSync(join(FIXTURES, 'lab-callid.security.log')));
  const ami = readAmi(readFileSync(join(FIXTURES, 'lab-callid.ami')));
  const seen = [...log.events, ...ami.events]
    .map((e) => e.address.text)
    .concat([...log.injections, ...ami.injections].map((i) => i.source?.text ?? ''));
  assert.ok(!seen.some((a) => a.startsWith('203.0.113.')), 'a forged address was read');
  const forged = log.injections.filter((i) => i.sign === 'repeated-header');
  assert.equal(forged.length, 6, 'InvalidAccountID and ChallengeSent of each quoted Call-ID');
  assert.ok(
    forged.every((i) => i.source?.text === '198.18.0.11'),
    'each blamed on its genuine source',
  );
  // On AMI the same Call-ID is only a value (no line break): events there, injections in the log. Either way the
  // sender is banned at once, for its line breaks.
  assert.equal(ami.events.filter((e) => e.sessionId.includes('RemoteAddress="IPV4/UDP/203.0.113.78/5060')).length, 6);
  assert.equal(ami.injections.length, 5);
  assert.equal(log.injections.length, 11);
});

test('messages.log, SECURITY lines among NOTICE ones, reads as security.log does', () => {
  const messages = readLog(readFileSync(join(FIXTURES, 'legit-phone.messages.log')));
  const security = readLog(readFileSync(join(FIXTURES, 'legit-phone.security.log')));
  assert.ok(messages.intake.counters.other > 0, 'the NOTICE lines are other records');
  assert.deepEqual(messages.events.map(eventKey), security.events.map(eventKey));
});

// ---- records written by hand: Asterisk's order, attacker text in the values it comes from ----

const PREFIX = '[2026-11-21 19:15:09] SECURITY[3977] res_security_log.c: ';

function record(kind: string, fields: Record<string, string>): string {
  return `SecurityEvent="${kind}"${Object.entries(fields)
    .map(([k, v]) => `,${k}="${v}"`)
    .join('')}`;
}

const TAIL: Record<string, Record<string, string>> = {
  ChallengeResponseFailed: { Challenge: '1795288509/8d4d', Response: '4e3e930d', ExpectedResponse: '' },
  ChallengeSent: { Challenge: '' },
};

function pjsip(kind: string, o: { account?: string; session?: string; remote?: string; tail?: Record<string, string> } = {}): string {
  return record(kind, {
    EventTV: '2026-11-21T19:15:09.670+0000',
    Severity: 'Error',
    Service: 'PJSIP',
    EventVersion: '1',
    AccountID: o.account ?? '6001',
    SessionID: o.session ?? '1740796878',
    LocalAddress: 'IPV4/UDP/198.18.0.1/5060',
    RemoteAddress: `IPV4/UDP/${o.remote ?? '198.18.0.11'}/5060`,
    ...(o.tail ?? TAIL[kind] ?? {}),
  });
}

const FORGED_RUN = '",SessionID="x",LocalAddress="IPV4/UDP/198.18.0.1/5060",RemoteAddress="IPV4/UDP/203.0.113.99/5060';

test('a well-formed record is an event, with the same values the AMI parser gives', () => {
  const r = readSecurityRecord(pjsip('ChallengeResponseFailed'));
  assert.equal(r.type, 'event');
  if (r.type !== 'event') return;
  assert.equal(r.event.address.text, '198.18.0.11');
  assert.equal(r.event.kind, 'ChallengeResponseFailed');
  assert.equal(r.event.accountId, '6001');
  assert.equal(r.event.eventTime, Date.UTC(2026, 10, 21, 19, 15, 9, 670));
  assert.deepEqual(readSecurityRecord(pjsip('InvalidAccountID', { remote: 'not-an-address' })), {
    type: 'invalid',
    kind: 'InvalidAccountID',
    reason: 'bad-address',
  });
  assert.deepEqual(readSecurityRecord(pjsip('InvalidAccountID').replace('Severity="Error"', 'Severity="Loud"')), {
    type: 'invalid',
    kind: 'InvalidAccountID',
    reason: 'bad-value',
  });
});

test('fields written into AccountID: the genuine RemoteAddress at its place, never the forged one', () => {
  const r = readSecurityRecord(pjsip('InvalidAccountID', { account: `a${FORGED_RUN}` }));
  assert.equal(r.type, 'broken');
  if (r.type !== 'broken') return;
  assert.equal(r.sign, 'repeated-header');
  assert.equal(r.source?.text, '198.18.0.11');
});

test('fields written into a value after RemoteAddress (the digest Response) cannot stand where Asterisk writes it', () => {
  // a RemoteAddress after Response: no LocalAddress right before it, so it is not Asterisk's
  const r = readSecurityRecord(
    pjsip('ChallengeResponseFailed', {
      tail: { Challenge: 'n', Response: 'r",RemoteAddress="IPV4/UDP/203.0.113.99/5060', ExpectedResponse: '' },
    }),
  );
  assert.equal(r.type, 'broken');
  if (r.type === 'broken') assert.equal(r.source?.text, '198.18.0.11');
});

test('when the record reads two ways (forged runs before and after), its source is unknown and nothing is blamed', () => {
  // SessionID (pjsip's Call-ID) and Response are both the attacker's: either run could be Asterisk's
  const forgedTail = `r",ExpectedResponse="",SessionID="s",LocalAddress="IPV4/UDP/198.18.0.1/5060",RemoteAddress="IPV4/UDP/203.0.113.99/5060",Challenge="n",Response="q`;
  const r = readSecurityRecord(pjsip('ChallengeResponseFailed', { tail: { Challenge: 'n', Response: forgedTail, ExpectedResponse: '' } }));
  assert.equal(r.type, 'broken');
  if (r.type === 'broken') assert.equal(r.source, null);
  // a Call-ID carrying a run and the field after it
  const s = readSecurityRecord(
    pjsip('ChallengeSent', {
      session: `c",LocalAddress="IPV4/UDP/198.18.0.1/5060",RemoteAddress="IPV4/UDP/203.0.113.99/5060",Challenge="`,
      tail: { Challenge: '' },
    }),
  );
  assert.equal(s.type, 'broken');
  if (s.type === 'broken') assert.equal(s.source, null);
});

test("a name an attacker ends his value with takes Asterisk's next quote: the separators it overlaps are still read", () => {
  // `a",Foo=` in AccountID: the quote Asterisk opens `",SessionID="` with closes the name `Foo="`
  const r = readSecurityRecord(pjsip('ChallengeResponseFailed', { account: 'a",Foo=' }));
  assert.equal(r.type, 'broken');
  if (r.type === 'broken') assert.equal(r.source?.text, '198.18.0.11', 'the genuine reading is found');
  // and a forged run after the addresses, in Response: two readings, nobody blamed (once, only the forged one was read)
  for (const name of ['Foo', 'Module']) {
    const forgedTail = `r",SessionID="s",LocalAddress="IPV4/UDP/198.18.0.1/5060",RemoteAddress="IPV4/UDP/203.0.113.99/5060",Challenge="n",Response="q`;
    const s = readSecurityRecord(
      pjsip('ChallengeResponseFailed', { account: `a",${name}=`, tail: { Challenge: 'n', Response: forgedTail, ExpectedResponse: '' } }),
    );
    assert.equal(s.type, 'broken');
    if (s.type === 'broken') assert.equal(s.source, null, name);
  }
});

test('a line break in AccountID: the rest of the record is on the next line, which belongs to it however it starts', () => {
  // the lab's shape: CR LF and a forged header
  let out = readLog(`${PREFIX}${pjsip('InvalidAccountID', { account: '\r\nRemoteAddress: IPV4/203.0.113.99/' })}\n`);
  assert.deepEqual(out.events, []);
  assert.deepEqual(
    out.injections.map((i) => [i.sign, i.source?.text]),
    [['control-characters', '198.18.0.11']],
  );
  // a forged log date after the break: the record is cut off before its addresses, so the line is still its rest
  out = readLog(
    `${PREFIX}${pjsip('InvalidAccountID', { account: '"\n[x] ' })}\n${PREFIX}${pjsip('ChallengeSent', { remote: '198.18.0.12' })}\n`,
  );
  assert.deepEqual(
    out.injections.map((i) => i.source?.text),
    ['198.18.0.11'],
  );
  assert.deepEqual(
    out.events.map((e) => e.address.text),
    ['198.18.0.12'],
    'the next record is read as usual',
  );
  // a whole forged SECURITY line after the break, naming a victim in a kind whose AccountID comes last: no event
  // and no ban for anyone, for which fields are whose cannot be told
  const forged = `${PREFIX}SecurityEvent="RequestBadFormat",EventTV="2026-11-21T19:15:09.670+0000",Severity="Error",Service="PJSIP",EventVersion="1",SessionID="s",LocalAddress="IPV4/UDP/198.18.0.1/5060",RemoteAddress="IPV4/UDP/203.0.113.99/5060",RequestType="x",AccountID="y`;
  out = readLog(`${PREFIX}${pjsip('InvalidAccountID', { account: `x\n${forged}` })}\n`);
  assert.deepEqual(out.events, []);
  assert.deepEqual(
    out.injections.map((i) => i.source),
    [null],
  );
});

test('a line Asterisk cut at its 8 KiB limit has the next record glued to it: neither is believed', () => {
  const long = `${PREFIX}${pjsip('InvalidAccountID', { session: 'c'.repeat(8200) })}`.slice(0, 8191);
  const out = readLog(
    `${long}${PREFIX}${pjsip('ChallengeSent', { remote: '198.18.0.12' })}\n${PREFIX}${pjsip('ChallengeSent', { remote: '198.18.0.13' })}\n`,
  );
  assert.deepEqual(
    out.injections.map((i) => [i.sign, i.source]),
    [['cut-short', null]],
  );
  assert.deepEqual(
    out.events.map((e) => e.address.text),
    ['198.18.0.13'],
  );
});

test('lines outside any record, over-long lines and over-long records are counted and skipped, and reading goes on', () => {
  const next = `${PREFIX}${pjsip('ChallengeSent', { remote: '198.18.0.12' })}\n`;
  // the rest of a record whose start was cut away (tail -n)
  let out = readLog(`",SessionID="x",LocalAddress="IPV4/UDP/198.18.0.1/5060",RemoteAddress="IPV4/UDP/203.0.113.99/5060"\n${next}`);
  assert.deepEqual(
    out.injections.map((i) => [i.sign, i.source]),
    [['fragment', null]],
  );
  assert.deepEqual(
    out.events.map((e) => e.address.text),
    ['198.18.0.12'],
  );
  // a line over the bound, in pieces
  const huge = Buffer.alloc(MAX_LINE_BYTES + 10, 'a');
  out = readLog(huge.subarray(0, 1000), huge.subarray(1000), '\n', next);
  assert.equal(out.intake.counters.oversized, 1);
  assert.deepEqual(
    out.events.map((e) => e.address.text),
    ['198.18.0.12'],
  );
  // a record of many lines: what it held is not believed
  out = readLog(`${PREFIX}${pjsip('InvalidAccountID', { account: `x${'\nline'.repeat(40)}` })}\n${next}`);
  assert.equal(out.intake.counters.oversized, 1);
  assert.deepEqual(
    out.injections.map((i) => i.source),
    [null],
  );
  assert.deepEqual(
    out.events.map((e) => e.address.text),
    ['198.18.0.12'],
  );
  // the logger's header line when it opens the file
  out = readLog(`[2026-11-21 19:19:59] Asterisk 22.10.1 built by root @ vm\n${next}`);
  assert.equal(out.intake.counters.other, 1);
  assert.deepEqual(
    out.events.map((e) => e.address.text),
    ['198.18.0.12'],
  );
  // a last line without its LF is still being written: left out, and the record before it stands
  out = readLog(next, `",Response="`);
  assert.equal(out.intake.counters.unterminated, 1);
  assert.deepEqual(
    out.events.map((e) => e.address.text),
    ['198.18.0.12'],
  );
  assert.deepEqual(out.injections, []);
});

test('however the log is cut into reads, it reads the same', () => {
  const bytes = readFileSync(join(FIXTURES, 'lab-injection.security.log'));
  const whole = readLog(bytes);
  const key = (r: Read) => JSON.stringify([r.events.map(eventKey), r.injections.map((i) => [i.kind, i.sign, i.source?.text])]);
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 20 }), (cuts) => {
      const at = [0, ...[...new Set(cuts)].sort((a, b) => a - b), bytes.length];
      const chunks = at.slice(1).map((end, i) => bytes.subarray(at[i]!, end));
      assert.equal(key(readLog(...chunks)), key(whole));
    }),
    { numRuns: 200 },
  );
});

// ---- hostile values, generated: whatever an attacker writes where Asterisk takes his text, no address but a
// record's genuine RemoteAddress is ever read from it ----

/** values an attacker chooses: AccountID (pjsip keeps 36 bytes of the From user, CR and LF un-escaped), SessionID
 * (the Call-ID: any length, no line break), and the fields after the addresses */
const ATTACKER_FIELDS = new Set([
  'AccountID',
  'SessionID',
  'Challenge',
  'Response',
  'ExpectedResponse',
  'RequestType',
  'RequestParams',
  'AuthMethod',
  'ReceivedChallenge',
  'ReceivedHash',
  'ExpectedAddress',
  'AttemptedTransport',
  'Module',
  'ACLName',
]);
const PIECES = [
  '",',
  '"',
  ',',
  '=',
  'a',
  '6001',
  ' ',
  FORGED_RUN,
  '",RemoteAddress="IPV4/UDP/203.0.113.99/5060',
  '",LocalAddress="IPV4/UDP/198.18.0.1/5060',
  '",SessionID="x',
  '",AccountID="a',
  '",EventTV="2026-11-21T19:15:09.000+0000',
  '",Challenge="',
  '",Response="',
  '",ExpectedResponse="',
  '",RequestType="x',
  '",Module="m',
  '",UsingPassword="1',
  '",SessionTV="2026-11-21T19:15:09.000+0000',
  '",Foo="',
  // a name without its quote: Asterisk's next separator supplies it
  '",Foo=',
  '",SessionID=',
  'SecurityEvent="InvalidAccountID',
  PREFIX,
  '[x] ',
  'IPV4/UDP/203.0.113.99/5060',
];
const BREAKS = ['\n', '\r\n', '\r'];
const VALUE: Record<string, string> = {
  EventTV: '2026-11-21T19:15:09.670+0000',
  Severity: 'Error',
  Service: 'PJSIP',
  EventVersion: '1',
  LocalAddress: 'IPV4/UDP/198.18.0.1/5060',
  UsingPassword: '1',
  SessionTV: '2026-11-21T19:15:09.000+0000',
};

const hostileValue = (name: string) =>
  fc
    .array(fc.constantFrom(...PIECES, ...(name === 'AccountID' ? BREAKS : [])), { maxLength: 8 })
    .map((p) => (name === 'AccountID' ? p.join('').slice(0, 36) : p.join('')));

const recordArb = fc.record({
  kind: fc.constantFrom(...Object.keys(SECURITY_KINDS)),
  hostile: fc.boolean(),
  optional: fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
  values: fc.record(Object.fromEntries([...ATTACKER_FIELDS].map((k) => [k, hostileValue(k)])) as Record<string, fc.Arbitrary<string>>),
  /** cut where Asterisk's 8 KiB limit would cut it: no LF, the next record glued on */
  cut: fc.option(fc.integer({ min: 1, max: 400 }), { freq: 8 }),
});

test("generated hostile records: nothing but a record's own RemoteAddress is read from it, and honest records are never lost", () => {
  fc.assert(
    fc.property(
      fc.array(recordArb, { minLength: 1, maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 4000 }), { maxLength: 6 }),
      (records, cuts) => {
        let text = '';
        const kindOf = new Map<string, string>();
        const honest: string[] = [];
        let glued = false;
        records.forEach((r, i) => {
          const remote = `198.51.100.${i + 1}`;
          kindOf.set(remote, r.kind);
          const schema = SECURITY_KINDS[r.kind]!;
          const fields: Record<string, string> = {};
          const names = [...schema.required, ...schema.optional.filter((_, j) => r.optional[j])];
          for (const name of names) {
            fields[name] =
              name === 'RemoteAddress'
                ? `IPV4/UDP/${remote}/5060`
                : r.hostile && Object.hasOwn(r.values, name)
                  ? r.values[name]!
                  : (VALUE[name] ?? 'v');
          }
          let line = `${PREFIX}${record(r.kind, fields)}`;
          if (!r.hostile && !glued) honest.push(remote);
          glued = r.hostile && r.cut !== null && r.cut < line.length;
          line = glued ? line.slice(0, r.cut!) : `${line}\n`;
          text += line;
        });
        const bytes = Buffer.from(text, 'utf8');
        const at = [0, ...[...new Set(cuts.filter((c) => c < bytes.length))].sort((a, b) => a - b), bytes.length];
        const out = readLog(...at.slice(1).map((end, i) => bytes.subarray(at[i]!, end)));
        for (const e of out.events) {
          assert.ok(kindOf.has(e.address.text), `event from ${e.address.text}`);
          assert.equal(e.kind, kindOf.get(e.address.text), `an event of another record's kind for ${e.address.text}`);
        }
        for (const inj of out.injections) {
          if (!inj.source) continue;
          assert.ok(kindOf.has(inj.source.text), `injection blamed on ${inj.source.text}`);
          assert.equal(inj.kind, kindOf.get(inj.source.text));
        }
        for (const remote of honest)
          assert.ok(
            out.events.some((e) => e.address.text === remote),
            `the honest record from ${remote} was lost`,
          );
      },
    ),
    { numRuns: Number(process.env.FC_RUNS ?? 3000) },
  );
});

// ---- the verb ----

test('replay reads a gzipped log, a log on stdin, and refuses what is neither log nor recording', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ami-guard-log-'));
  const plain = readFileSync(join(FIXTURES, 'register-bruteforce.security.log'));
  writeFileSync(join(dir, 'security.log.1.gz'), gzipSync(plain));
  const expected = await replayFile(join(FIXTURES, 'register-bruteforce.security.log'), {});
  const gz = await replayFile(join(dir, 'security.log.1.gz'), {});
  assert.deepEqual(gz.addresses, expected.addresses);
  assert.equal(gz.messages, expected.messages);

  const viaStdin = await cli(['replay', '-', '--json'], {}, 30_000, plain);
  assert.equal(viaStdin.code, 0, viaStdin.stderr);
  assert.deepEqual((JSON.parse(viaStdin.stdout) as { addresses: unknown }).addresses, expected.addresses);

  writeFileSync(join(dir, 'notes.txt'), 'hello\n');
  const bad = await cli(['replay', join(dir, 'notes.txt')]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /not an Asterisk log/);
});
