// `replay --verbose`: every event and the decision taken on it, as the daemon's rules take it (counted n/threshold,
// the thresholds of trusted addresses and known offenders, challenges, logins, skipped and why, banned and why,
// injections), in text one line each and as JSON lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { replayFile } from '../../src/cli/commands/replay.js';
import type { Decision, EventDecision } from '../../src/cli/dry-run.js';
import { cli } from '../support/cli.js';

const FIXTURES = 'test/fixtures/ami';

async function decisions(file: string): Promise<{ list: Decision[]; events: number; injections: number }> {
  const list: Decision[] = [];
  const report = await replayFile(file, {}, (d) => {
    list.push(d);
  });
  return { list, events: report.securityEvents, injections: report.injections };
}

const about = (list: Decision[], address: string): EventDecision[] =>
  list.filter((d): d is EventDecision => d.type === 'event' && d.address === address);

test('one decision per event and per injection, in order', async () => {
  for (const s of ['register-bruteforce', 'acl-violation', 'lab-injection']) {
    for (const file of [`${s}.security.log`, `${s}.ami`]) {
      const { list, events, injections } = await decisions(join(FIXTURES, file));
      assert.equal(list.filter((d) => d.type === 'event').length, events, file);
      assert.equal(list.filter((d) => d.type === 'injection').length, injections, file);
      const times = list.filter((d) => d.type === 'event').map((d) => d.time);
      assert.deepEqual(times, [...times].sort(), `${file}: in the recording's order`);
    }
  }
});

test('a brute force: counted 1/5 to 4/5, banned at the 5th and why, then skipped as already banned', async () => {
  const { list } = await decisions(join(FIXTURES, 'register-bruteforce.security.log'));
  const own = list.find((d) => d.type === 'event' && d.address === '127.0.0.1');
  assert.deepEqual(own && { decision: own.decision, why: (own as EventDecision).why }, { decision: 'skipped', why: 'in policy.ignoreip' });
  const attacker = about(list, '198.18.0.11').filter((d) => d.kind === 'ChallengeResponseFailed');
  assert.deepEqual(
    attacker.slice(0, 4).map((d) => [d.decision, d.count, d.threshold]),
    [1, 2, 3, 4].map((n) => ['counted', n, 5]),
  );
  const ban = attacker[4]!;
  assert.equal(ban.decision, 'banned');
  assert.equal(ban.reason, 'failures');
  assert.equal(ban.count, 5);
  assert.equal(ban.bantime, 3_600_000);
  assert.equal(Date.parse(ban.until!) - Date.parse(ban.time), 3_600_000);
  assert.ok(attacker.slice(5).every((d) => d.decision === 'skipped' && d.why === 'already banned' && d.until === ban.until));
});

test('a phone that logged in is trusted: its typo counts against the higher threshold; a request reported twice counts once', async () => {
  const phone = about((await decisions(join(FIXTURES, 'legit-phone.security.log'))).list, '198.18.0.20');
  assert.ok(phone.some((d) => d.decision === 'login' && d.trusted));
  assert.ok(phone.some((d) => d.decision === 'challenge' && d.threshold === 10));
  assert.deepEqual(
    phone.filter((d) => d.decision === 'counted').map((d) => [d.count, d.threshold, d.why]),
    [[1, 10, 'trusted']],
  );
  assert.ok(!phone.some((d) => d.decision === 'banned'));

  const acl = about((await decisions(join(FIXTURES, 'acl-violation.security.log'))).list, '198.18.0.13');
  const pair = acl.findIndex((d) => d.kind === 'ChallengeResponseFailed');
  assert.equal(acl[pair - 1]?.kind, 'FailedACL');
  assert.deepEqual([acl[pair]!.decision, acl[pair]!.why], ['skipped', 'the same request as the FailedACL before it']);
});

test('injections: the source banned at once for policy.injection.bantime, then already banned', async () => {
  const { list } = await decisions(join(FIXTURES, 'lab-injection.security.log'));
  const injections = list.filter((d) => d.type === 'injection');
  const first = injections.find((d) => d.address === '198.18.0.11')!;
  assert.equal(first.decision, 'banned');
  assert.equal(first.bantime, 7 * 86_400_000);
  assert.equal(first.sign, 'control-characters');
  assert.ok(
    injections
      .filter((d) => d.address === '198.18.0.11')
      .slice(1)
      .every((d) => d.decision === 'skipped' && d.why === 'already banned'),
  );
  assert.ok(!injections.some((d) => d.decision === 'unattributed'));
});

function line(tv: string, kind: string, remote: string, account: string): string {
  const severity = kind === 'ChallengeSent' ? 'Informational' : 'Error';
  return (
    `[2026-11-21 19:15:09] SECURITY[3977] res_security_log.c: SecurityEvent="${kind}",EventTV="${tv}",Severity="${severity}",Service="SIP",` +
    `EventVersion="2",AccountID="${account}",SessionID="0x7f6bc40${tv.slice(14, 16)}${tv.slice(17, 19)}",LocalAddress="IPV4/UDP/198.18.0.1/5060",` +
    `RemoteAddress="IPV4/UDP/${remote}/5060",Challenge="54fab602",ReceivedChallenge="54fab602",ReceivedHash="b9dd22c3"\n`
  );
}

test('a known offender, back after its ban ran out, is banned at policy.offender.maxretry; the account is shown escaped', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ag-verbose-'));
  const file = join(dir, 'security.log');
  let log = '';
  for (let i = 0; i < 5; i++) log += line(`2026-11-21T10:00:0${i}.000+0000`, 'InvalidPassword', '192.0.2.7', 'admin');
  for (let i = 0; i < 3; i++) log += line(`2026-11-21T12:00:0${i}.000+0000`, 'InvalidPassword', '192.0.2.7', `\u202eadmin\u001b[2J`);
  writeFileSync(file, log);
  const later = about((await decisions(file)).list, '192.0.2.7').slice(5);
  assert.deepEqual(
    later.map((d) => [d.decision, d.count, d.threshold ?? null, d.why ?? null]),
    [
      ['counted', 1, 3, 'known offender'],
      ['counted', 2, 3, 'known offender'],
      ['banned', 3, null, null],
    ],
  );
  // escalation: the second ban lasts twice the first
  assert.equal(later[2]!.bantime, 2 * 3_600_000);

  const text = await cli(['replay', '--verbose', file]);
  assert.equal(text.code, 0, text.stderr);
  const lines = text.stdout.split('\n');
  assert.equal(lines[0], '2026-11-21T10:00:00.000Z  InvalidPassword          192.0.2.7        "admin"  counted 1/5');
  assert.match(lines[4]!, /^2026-11-21T10:00:04\.000Z .* BANNED for 1h: 5 failures until 2026-11-21T11:00:04\.000Z$/);
  assert.match(lines[5]!, /counted 1\/3 \(known offender\)$/);
  // attacker text reaches the terminal escaped: no bidi override, no escape sequence
  assert.ok(lines[5]!.includes('"\\u202eadmin?[2J"'), lines[5]);
  assert.ok(!/[\u0000-\u001f\u202e]/.test(text.stdout.replace(/\n/g, '')));
  assert.ok(text.stdout.includes(`\n\n${file}: 8 lines, 8 security events, 0 invalid, 0 injections\n`), 'the report follows');
});

test('--verbose --json: one JSON object per line, the decisions then the report', async () => {
  const r = await cli(['replay', '--verbose', '--json', join(FIXTURES, 'lab-injection.security.log')]);
  assert.equal(r.code, 0, r.stderr);
  const rows = r.stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; decision?: string; addresses?: unknown[] });
  assert.deepEqual([...new Set(rows.map((x) => x.type))].sort(), ['event', 'injection', 'report']);
  assert.equal(rows.at(-1)!.type, 'report');
  assert.equal(rows.filter((x) => x.type === 'report').length, 1);
  assert.equal(rows.filter((x) => x.type !== 'report').length, 25 + 10);
  assert.ok(rows.at(-1)!.addresses!.length > 0);
});

test('an attacker rotating through a /64, and over a /24 with escalation on: the dry run counts and bans as the daemon does', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ag-verbose-'));
  const file = join(dir, 'security.log');
  const v6 = (tv: string, remote: string): string =>
    line(tv, 'InvalidPassword', '192.0.2.1', '6001')
      .replace('LocalAddress="IPV4/UDP/198.18.0.1/5060"', 'LocalAddress="IPV6/UDP/fd00::1/5060"')
      .replace('RemoteAddress="IPV4/UDP/192.0.2.1/5060"', `RemoteAddress="IPV6/UDP/${remote}/5060"`);
  let log = '';
  // eight addresses of one /64, one guess each
  for (let i = 0; i < 8; i++) log += v6(`2026-11-21T10:00:0${i}.000+0000`, `2001:db8:aa:1::${i + 1}`);
  // three hosts of a /24, five guesses each
  for (const [h, host] of ['7', '80', '201'].entries()) {
    for (let i = 0; i < 5; i++) log += line(`2026-11-21T10:01:${h}${i}.000+0000`, 'InvalidPassword', `203.0.113.${host}`, '6001');
  }
  writeFileSync(file, log);
  const list: Decision[] = [];
  process.env.AMI_GUARD_POLICY_SUBNET_MAXBANS = '3';
  let report;
  try {
    report = await replayFile(file, {}, (d) => {
      list.push(d);
    });
  } finally {
    delete process.env.AMI_GUARD_POLICY_SUBNET_MAXBANS;
  }
  const rotating = list.filter((d): d is EventDecision => d.type === 'event' && d.address.startsWith('2001:db8:aa:1::'));
  assert.deepEqual(
    rotating.map((d) => [d.decision, d.target, d.count ?? null]),
    [
      ['counted', '2001:db8:aa:1::/64', 1],
      ['counted', '2001:db8:aa:1::/64', 2],
      ['counted', '2001:db8:aa:1::/64', 3],
      ['counted', '2001:db8:aa:1::/64', 4],
      ['banned', '2001:db8:aa:1::/64', 5],
      ['skipped', '2001:db8:aa:1::/64', null],
      ['skipped', '2001:db8:aa:1::/64', null],
      ['skipped', '2001:db8:aa:1::/64', null],
    ],
  );
  // every address of the prefix is reported banned, as the prefix
  const reported = report.addresses.filter((a) => a.address.startsWith('2001:db8:aa:1::'));
  assert.equal(reported.length, 8);
  assert.ok(
    reported.every((a) => a.verdict === 'banned' && a.countedAs === '2001:db8:aa:1::/64' && a.reason === 'failures'),
    JSON.stringify(reported),
  );
  assert.deepEqual(
    reported.map((a) => a.counted),
    [1, 1, 1, 1, 1, 0, 0, 0],
  );
  // the third host's ban escalates to the /24; each host is reported with its own ban
  const third = list.find((d): d is EventDecision => d.type === 'event' && d.address === '203.0.113.201' && d.decision === 'banned');
  assert.deepEqual([third?.subnet, third?.members], ['203.0.113.0/24', ['203.0.113.7', '203.0.113.80', '203.0.113.201']]);
  assert.ok(
    report.addresses.filter((a) => a.address.startsWith('203.0.113.')).every((a) => a.verdict === 'banned' && a.reason === 'failures'),
  );

  const text = await cli(['replay', '--verbose', file], { AMI_GUARD_POLICY_SUBNET_MAXBANS: '3' });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /2001:db8:aa:1::1 +"6001" +counted 1\/5 as 2001:db8:aa:1::\/64\n/);
  assert.match(text.stdout, /BANNED 2001:db8:aa:1::\/64 for 1h: 5 failures until \S+\n/);
  assert.match(
    text.stdout,
    /BANNED for 1h: 5 failures until \S+; subnet 203\.0\.113\.0\/24 banned after 3 bans \(203\.0\.113\.7, 203\.0\.113\.80, 203\.0\.113\.201\)\n/,
  );
  assert.match(text.stdout, /2001:db8:aa:1::8 +1 +0 +banned as 2001:db8:aa:1::\/64 at 10:00:04\.000 after 5 failures \(failures\)\n/);
});
