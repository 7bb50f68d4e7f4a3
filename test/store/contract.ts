// The behaviour every Store must have, run against each implementation by its own test file.
import { recordChallenge, recordFailure, recordSuccess } from '../../src/store/activity.js';
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isParsedTarget, parseAddress, parseTarget, type IpAddress, type IpPrefix, type IpTarget } from '../../src/net/ip.js';
import {
  DEFAULT_RULES,
  type ActiveBan,
  type FailureInput,
  type PolicyParams,
  type Store,
  type TargetActivity,
} from '../../src/store/store.js';

export const POLICY: PolicyParams = {
  maxretry: 5,
  findtimeMs: 600_000,
  bantimeMs: 3_600_000,
  historyTtlMs: 30 * 86_400_000,
  ...DEFAULT_RULES,
};
export const NODE = 'pbx-test-1';
export const T0 = 1_700_000_000_000;

/** Makes a fresh store that shares nothing with any other one made before. */
export type StoreFactory = (policy: PolicyParams) => Promise<Store>;

export function addr(text: string): IpAddress {
  const a = parseAddress(text);
  assert.ok(a, text);
  return a;
}

export function target(text: string): IpTarget {
  const t = parseTarget(text);
  assert.ok(t, text);
  return t;
}

export function failure(address: string, now: number, extra: Partial<FailureInput> = {}): FailureInput {
  return { address: addr(address), kind: 'InvalidPassword', account: '6001', weight: 1, now, ...extra };
}

/** 10.0.0.0 + i, e.g. hostAddress(300) = 10.0.1.44 */
export function hostAddress(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

/** One target's activity in a batch: nothing but what `extra` says. */
export function activity(target: string, at: number, extra: Partial<TargetActivity> = {}): TargetActivity {
  const t = parseTarget(target);
  assert.ok(t, target);
  return { target: t, failures: 0, kinds: {}, account: '', challenges: 0, successes: 0, trust: false, first: at, last: at, ...extra };
}

/** `n` failures of one kind, as the daemon folds them (weight 1 each). */
export function failures(target: string, at: number, n: number, kind = 'InvalidPassword', account = '6001'): TargetActivity {
  return activity(target, at, { failures: n, kinds: { [kind]: n }, account });
}

/** The pages of activeBans as {address, until}, after checking that each carries its parsed target. */
export async function collect(bans: AsyncIterable<ActiveBan[]>): Promise<Array<Array<{ address: string; until: number }>>> {
  const pages: Array<Array<{ address: string; until: number }>> = [];
  for await (const page of bans) {
    pages.push(
      page.map((b) => {
        assert.ok(isParsedTarget(b.target) && b.target.text === b.address, b.address);
        return { address: b.address, until: b.until };
      }),
    );
  }
  return pages;
}

export function storeContract(name: string, factory: () => StoreFactory): void {
  describe(`${name}: Store contract`, () => {
    const open: Store[] = [];
    const make = async (policy: PolicyParams = POLICY): Promise<Store> => {
      const s = await factory()(policy);
      open.push(s);
      return s;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((s) => s.close()));
    });

    it('counts maxretry-1 failures, bans on the maxretry-th with the window in the record, then reports already-banned', async () => {
      const store = await make();
      const kinds = ['InvalidPassword', 'InvalidPassword', 'ChallengeResponseFailed', 'InvalidPassword', 'InvalidAccountID'];
      for (let i = 0; i < 4; i++) {
        const v = await recordFailure(store, failure('198.51.100.7', T0 + i * 1_000, { kind: kinds[i]! }));
        // one failure short: on the brink until the first one leaves findtime
        const brink = i === 3 ? { brink: { remaining: 1, until: T0 + POLICY.findtimeMs } } : {};
        assert.deepEqual(v, { type: 'counted', count: i + 1, ...brink });
      }
      const at = T0 + 4_000;
      const v = await recordFailure(store, failure('198.51.100.7', at, { kind: kinds[4]! }));
      const expected = {
        address: '198.51.100.7',
        reason: 'failures',
        kinds: { InvalidPassword: 3, ChallengeResponseFailed: 1, InvalidAccountID: 1 },
        count: 5,
        firstSeen: T0,
        lastSeen: at,
        bannedAt: at,
        until: at + POLICY.bantimeMs,
        node: NODE,
        previousBans: 0,
        account: '6001',
      };
      assert.deepEqual(v, { type: 'banned', ban: expected });
      assert.deepEqual(await store.getBan(target('198.51.100.7'), at + 1), expected);

      for (const now of [at + 1, at + POLICY.bantimeMs - 1]) {
        assert.deepEqual(await recordFailure(store, failure('198.51.100.7', now)), {
          type: 'already-banned',
          until: at + POLICY.bantimeMs,
        });
      }
      // other addresses have windows of their own
      assert.deepEqual(await recordFailure(store, failure('198.51.100.8', at)), { type: 'counted', count: 1 });
    });

    it('refuses a policy that is not positive whole milliseconds and counts', async () => {
      await assert.rejects(make({ ...POLICY, maxretry: 0 }), RangeError);
      await assert.rejects(make({ ...POLICY, findtimeMs: 1.5 }), RangeError);
    });

    it('counts IPv6 addresses under their canonical form', async () => {
      const store = await make();
      for (let i = 0; i < 4; i++) await recordFailure(store, failure('2001:db8::1', T0 + i));
      const v = await recordFailure(store, failure('2001:0DB8:0:0:0:0:0:1', T0 + 4));
      assert.equal(v.type, 'banned');
      assert.equal(v.type === 'banned' && v.ban.address, '2001:db8::1');
    });

    it('slides the window: failures more than findtime apart never ban, the same failures closer together do', async () => {
      const store = await make();
      for (let i = 0; i < 20; i++) {
        const v = await recordFailure(store, failure('192.0.2.1', T0 + i * (POLICY.findtimeMs + 1)));
        assert.deepEqual(v, { type: 'counted', count: 1 });
      }
      // maxretry failures that never fit in one window: at most maxretry-1 are ever counted together
      const spread = Math.floor(POLICY.findtimeMs / (POLICY.maxretry - 1)) + 1;
      for (let i = 0; i < 3 * POLICY.maxretry; i++) {
        const v = await recordFailure(store, failure('192.0.2.2', T0 + i * spread));
        assert.equal(v.type, 'counted');
        assert.ok(v.type === 'counted' && v.count <= POLICY.maxretry - 1, JSON.stringify(v));
      }
      // the same count squeezed just inside one window bans
      const tight = Math.floor((POLICY.findtimeMs - 1) / (POLICY.maxretry - 1));
      let last;
      for (let i = 0; i < POLICY.maxretry; i++) last = await recordFailure(store, failure('192.0.2.3', T0 + i * tight));
      assert.equal(last?.type, 'banned');
      assert.equal(last?.type === 'banned' && last.ban.firstSeen, T0);
    });

    it('counts a failure of weight w as w failures; the record counts the events by kind', async () => {
      const store = await make();
      assert.deepEqual(await recordFailure(store, failure('192.0.2.10', T0, { weight: 3, kind: 'InvalidPassword' })), {
        type: 'counted',
        count: 3,
      });
      const v = await recordFailure(store, failure('192.0.2.10', T0 + 10, { weight: 2, kind: 'FailedACL' }));
      assert.equal(v.type, 'banned');
      assert.ok(v.type === 'banned');
      assert.deepEqual([v.ban.count, v.ban.kinds, v.ban.firstSeen, v.ban.lastSeen], [5, { InvalidPassword: 1, FailedACL: 1 }, T0, T0 + 10]);
      // a weight beyond maxretry bans at once and counts maxretry
      const big = await recordFailure(store, failure('192.0.2.11', T0, { weight: 50 }));
      assert.ok(big.type === 'banned');
      // the window keeps as many entries as the highest threshold (a trusted address's)
      assert.equal(big.ban.count, Math.max(POLICY.maxretry, POLICY.trust.maxretry));
      await assert.rejects(recordFailure(store, failure('192.0.2.12', T0, { weight: 0 })), RangeError);
      await assert.rejects(recordFailure(store, failure('192.0.2.12', T0, { weight: 1.5 })), RangeError);
      await assert.rejects(recordFailure(store, failure('192.0.2.12', T0 + 0.5)), RangeError);
    });

    it('keeps history across unban; unban lifts the ban, resets the window and says whether a ban existed', async () => {
      const store = await make();
      const ip = '203.0.113.50';
      for (let i = 0; i < POLICY.maxretry; i++) await recordFailure(store, failure(ip, T0 + i));
      assert.equal((await store.history(target(ip))).length, 1);

      assert.equal(await store.unban(target(ip), T0 + 10), true);
      assert.equal(await store.unban(target(ip), T0 + 10), false);
      assert.equal(await store.getBan(target(ip), T0 + 10), null);
      assert.deepEqual(await store.history(target(ip)), [{ at: T0 + 4, until: T0 + 4 + POLICY.bantimeMs, reason: 'failures', node: NODE }]);

      // now a known offender: offenderMaxretry failures ban it
      const again = POLICY.offenderMaxretry;
      const t1 = T0 + 100;
      for (let i = 0; i < again - 1; i++) {
        const brink = i === again - 2 ? { brink: { remaining: 1, until: t1 + POLICY.findtimeMs } } : {};
        assert.deepEqual(await recordFailure(store, failure(ip, t1 + i)), { type: 'counted', count: i + 1, ...brink });
      }
      // unban without a ban still resets the window
      assert.equal(await store.unban(target(ip), t1 + 5), false);
      assert.deepEqual(await recordFailure(store, failure(ip, t1 + 10)), { type: 'counted', count: 1 });
      let v;
      for (let i = 1; i < again; i++) v = await recordFailure(store, failure(ip, t1 + 10 + i));
      assert.ok(v?.type === 'banned');
      assert.equal(v.ban.previousBans, 1);
      const hist = await store.history(target(ip));
      assert.deepEqual(
        hist.map((h) => h.at),
        [t1 + 10 + again - 1, T0 + 4],
        'newest first',
      );
      // the second ban lasts bantime x factor
      assert.deepEqual(await collect(store.activeBans(t1 + 100)), [
        [{ address: ip, until: t1 + 10 + again - 1 + POLICY.bantimeMs * POLICY.increment.factor }],
      ]);
      await store.unban(target(ip), t1 + 100);
      assert.deepEqual(await collect(store.activeBans(t1 + 100)), [], 'unban leaves the index');
    });

    it('bans an address or a network by hand, replacing an earlier ban', async () => {
      const store = await make();
      for (let i = 0; i < 3; i++) await recordFailure(store, failure('198.51.100.20', T0 + i));
      const manual = await store.ban({ target: target('198.51.100.20'), reason: 'operator', durationMs: 60_000, now: T0 + 10 });
      assert.deepEqual(manual, {
        address: '198.51.100.20',
        reason: 'operator',
        kinds: {},
        count: 0,
        firstSeen: T0 + 10,
        lastSeen: T0 + 10,
        bannedAt: T0 + 10,
        until: T0 + 60_010,
        node: NODE,
        previousBans: 0,
      });
      assert.deepEqual(await store.getBan(target('198.51.100.20'), T0 + 11), manual);
      assert.deepEqual(await recordFailure(store, failure('198.51.100.20', T0 + 20)), { type: 'already-banned', until: T0 + 60_010 });
      // the window was reset by the ban: after it, counting starts from one
      assert.deepEqual(await recordFailure(store, failure('198.51.100.20', T0 + 60_010)), { type: 'counted', count: 1 });

      const net = target('2001:db8:aa::77/48');
      assert.equal(net.text, '2001:db8:aa::/48');
      const first = await store.ban({ target: net, reason: 'abuse report', durationMs: 86_400_000, now: T0 });
      assert.equal(first.address, '2001:db8:aa::/48');
      const second = await store.ban({ target: net, reason: 'shorter', durationMs: 1_000, now: T0 + 5 });
      // it replaced the ban in force: no second offence
      assert.equal(second.previousBans, 0);
      assert.deepEqual(await store.getBan(net, T0 + 6), second);
      assert.deepEqual(
        (await store.history(net)).map((h) => h.reason),
        ['shorter'],
      );
      const active = (await collect(store.activeBans(T0 + 6))).flat();
      assert.deepEqual(
        active.find((b) => b.address === '2001:db8:aa::/48'),
        { address: '2001:db8:aa::/48', until: T0 + 1_005 },
      );

      await store.ban({ target: target('192.0.2.0/24'), reason: 'manual', durationMs: 1_000, now: T0 });
      assert.equal((await store.getBan(target('192.0.2.0/24'), T0))?.address, '192.0.2.0/24');
      await assert.rejects(store.ban({ target: net, reason: 'x', durationMs: 0, now: T0 }), RangeError);
    });

    it('forgets a ban whose until has passed: getBan is null and failures count again', async () => {
      const store = await make();
      for (let i = 0; i < POLICY.maxretry; i++) await recordFailure(store, failure('198.51.100.30', T0));
      const until = T0 + POLICY.bantimeMs;
      assert.ok(await store.getBan(target('198.51.100.30'), until - 1));
      assert.equal(await store.getBan(target('198.51.100.30'), until), null);
      assert.deepEqual(await recordFailure(store, failure('198.51.100.30', until)), { type: 'counted', count: 1 });
      assert.deepEqual(await collect(store.activeBans(until)), []);
    });

    it('pages through 12,000 bans, yielding each active one exactly once', async () => {
      const store = await make();
      const now = T0 + 5_000;
      const expected = new Map<string, number>();
      const bans = [];
      for (let i = 0; i < 12_000; i++) {
        // every fourth ban is over by `now`
        const durationMs = i % 4 === 0 ? 1_000 + (i % 7) : 60_000 + i;
        const address = hostAddress(i);
        if (i % 4 !== 0) expected.set(address, T0 + durationMs);
        bans.push(store.ban({ target: target(address), reason: 'bulk', durationMs, now: T0 }));
        if (bans.length === 2_000) await Promise.all(bans.splice(0));
      }
      await Promise.all(bans);

      const pages = await collect(store.activeBans(now));
      assert.ok(pages.length > 1, `${pages.length} page(s)`);
      const seen = new Map<string, number>();
      for (const page of pages) {
        assert.ok(page.length > 0);
        for (const b of page) {
          assert.ok(!seen.has(b.address), `${b.address} yielded twice`);
          seen.set(b.address, b.until);
        }
      }
      assert.equal(seen.size, expected.size);
      assert.deepEqual(seen, expected);
    });

    it('keeps the failures of the current window, newest first, with the last account id as inert data', async () => {
      const store = await make();
      const evil = 'a|b{c}#;=%,:~ 6001"';
      await recordFailure(store, failure('198.51.100.20', T0, { kind: 'InvalidAccountID', account: evil }));
      assert.deepEqual(await store.recentFailures(target('198.51.100.20')), [{ at: T0, kind: 'InvalidAccountID', account: evil }]);
      await recordFailure(store, failure('198.51.100.20', T0 + 1000, { kind: 'ChallengeResponseFailed', account: '' }));
      await recordFailure(store, failure('198.51.100.20', T0 + 2000, { kind: 'UnknownToAsterisk', account: '6001' }));
      // the account of the newest failure only: a batch folds its failures and keeps its last account
      assert.deepEqual(await store.recentFailures(target('198.51.100.20')), [
        { at: T0 + 2000, kind: 'other', account: '6001' },
        { at: T0 + 1000, kind: 'ChallengeResponseFailed', account: '' },
        { at: T0, kind: 'InvalidAccountID', account: '' },
      ]);
      assert.deepEqual(await store.recentFailures(target('198.51.100.21')), []);
    });

    it('lists the targets counting toward a ban: most failures first, then the most recent; within findtime; banned ones not', async () => {
      const store = await make();
      const now = T0 + 10_000;
      await store.recordActivity([failures('198.51.100.4', T0 + 4_000, 4)], T0 + 4_000);
      await store.recordActivity([failures('198.51.100.2', T0 + 3_000, 3)], T0 + 3_000);
      for (let i = 0; i < 3; i++)
        await recordFailure(store, failure('198.51.100.1', T0 + i * 1_000, { account: i === 2 ? 'acct-x' : '6001' }));
      await store.recordActivity([failures('2001:db8:1::/64', T0 + 100, 2)], T0 + 100);
      // trusted: counted against trust.maxretry
      await recordSuccess(store, { address: addr('198.51.100.8'), now: T0, trust: true });
      await store.recordActivity([failures('198.51.100.8', T0 + 200, 2)], T0 + 200);
      // a known offender (a ban in its history): offender.maxretry
      await store.ban({ target: target('198.51.100.9'), reason: 'manual', durationMs: 60_000, now: T0 - 5_000 });
      assert.equal(await store.unban(target('198.51.100.9'), T0 - 4_000), true);
      assert.deepEqual(await recordFailure(store, failure('198.51.100.9', T0 + 50)), { type: 'counted', count: 1 });
      // not counting: failures older than findtime, banned by failures, banned by hand, challenges alone
      await recordFailure(store, failure('198.51.100.3', T0 - POLICY.findtimeMs - 100_000));
      const banned = await store.recordActivity([failures('198.51.100.5', T0 + 500, 5)], T0 + 500);
      assert.equal(banned[0]!.type, 'banned');
      await store.recordActivity([failures('198.51.100.6', T0 + 600, 2)], T0 + 600);
      await store.ban({ target: target('198.51.100.6'), reason: 'manual', durationMs: 60_000, now: T0 + 700 });
      await store.recordActivity([activity('198.51.100.7', T0 + 800, { challenges: 2 })], T0 + 800);

      const all = await store.failing(now, 20);
      assert.equal(all.total, 6);
      assert.deepEqual(
        all.top.map((f) => [f.target.text, f.failures, f.threshold, f.last, f.account]),
        [
          ['198.51.100.4', 4, 5, T0 + 4_000, '6001'],
          ['198.51.100.2', 3, 5, T0 + 3_000, '6001'],
          ['198.51.100.1', 3, 5, T0 + 2_000, 'acct-x'],
          ['198.51.100.8', 2, POLICY.trust.maxretry, T0 + 200, '6001'],
          ['2001:db8:1::/64', 2, 5, T0 + 100, '6001'],
          ['198.51.100.9', 1, POLICY.offenderMaxretry, T0 + 50, '6001'],
        ],
      );
      assert.ok(all.top.every((f) => isParsedTarget(f.target)));
      assert.equal(all.local, undefined);
      // bounded: the best few, the total still of all
      const few = await store.failing(now, 2);
      assert.deepEqual([few.total, few.top.map((f) => f.target.text)], [6, ['198.51.100.4', '198.51.100.2']]);
      assert.deepEqual(await store.failing(now, 0), { total: 6, top: [] });
      // findtime later, only the failures after the cut count
      const later = await store.failing(T0 + 2_500 + POLICY.findtimeMs, 20);
      assert.deepEqual(
        [later.total, later.top.map((f) => [f.target.text, f.failures])],
        [
          2,
          [
            ['198.51.100.4', 4],
            ['198.51.100.2', 3],
          ],
        ],
      );
      await assert.rejects(store.failing(now, -1), RangeError);
      await assert.rejects(store.failing(now, 1.5), RangeError);
    });

    it("keeps the operator's note with a manual ban", async () => {
      const store = await make();
      const rec = await store.ban({ target: target('203.0.113.0/24'), reason: 'manual', durationMs: 60_000, now: T0, note: 'ticket 7' });
      assert.equal(rec.note, 'ticket 7');
      const got = await store.getBan(target('203.0.113.0/24'), T0 + 1);
      assert.equal(got?.note, 'ticket 7');
      assert.equal(got?.reason, 'manual');
      const plain = await store.ban({ target: target('203.0.113.9'), reason: 'manual', durationMs: 60_000, now: T0 });
      assert.equal(plain.note, undefined);
    });

    it('banning what is already banned replaces the ban and adds no history entry (no offender made of it)', async () => {
      const store = await make();
      const t = target('203.0.113.40');
      await store.ban({ target: t, reason: 'manual', durationMs: 60_000, now: T0 });
      const again = await store.ban({ target: t, reason: 'manual', durationMs: 120_000, now: T0 + 10, note: 'longer' });
      assert.equal(again.previousBans, 0);
      assert.equal(again.until, T0 + 10 + 120_000);
      const history = await store.history(t);
      assert.equal(history.length, 1, 'one ban in the history');
      assert.equal(history[0]!.until, T0 + 10 + 120_000);
      // once the first ban is over, a new one is a second offence
      const later = await store.ban({ target: t, reason: 'manual', durationMs: 60_000, now: T0 + 200_000 });
      assert.equal(later.previousBans, 1);
      assert.equal((await store.history(t)).length, 2);
    });

    it('a trusted address survives mistyped passwords and is banned past the trusted threshold', async () => {
      const store = await make();
      const a = '198.51.100.60';
      await recordSuccess(store, { address: addr(a), now: T0, trust: true });
      assert.ok((await store.trustedUntil(target(a), T0 + 1))! > T0);
      for (let i = 1; i < POLICY.trust.maxretry; i++) {
        assert.equal((await recordFailure(store, failure(a, T0 + i))).type, 'counted', `failure ${i}`);
      }
      const v = await recordFailure(store, failure(a, T0 + 100));
      assert.equal(v.type, 'banned');
      assert.equal(v.type === 'banned' && v.ban.count, POLICY.trust.maxretry);
      // a login without the trust flag (AMI, by default) trusts nothing
      await recordSuccess(store, { address: addr('198.51.100.61'), now: T0, trust: false });
      assert.equal(await store.trustedUntil(target('198.51.100.61'), T0 + 1), null);
    });

    it('silent scanner: unanswered challenges ban; answered ones never do', async () => {
      const store = await make();
      const phone = '198.51.100.70';
      for (let i = 0; i < 3 * POLICY.scanner.maxretry; i++) {
        assert.equal((await recordChallenge(store, { address: addr(phone), now: T0 + i * 10 })).type, 'counted');
        await recordSuccess(store, { address: addr(phone), now: T0 + i * 10 + 1, trust: true });
      }
      const scanner = '198.51.100.71';
      let v;
      for (let i = 0; i < POLICY.scanner.maxretry; i++) v = await recordChallenge(store, { address: addr(scanner), now: T0 + i });
      assert.equal(v!.type, 'banned');
      if (v!.type === 'banned') {
        assert.equal(v!.ban.reason, 'scanner');
        assert.deepEqual(v!.ban.kinds, { ChallengeSent: POLICY.scanner.maxretry });
      }
    });

    it('escalation: bans last bantime x2, x4 …; a known offender needs fewer failures; the recidive ban comes last', async () => {
      const store = await make();
      const a = '198.51.100.80';
      let now = T0;
      const durations: number[] = [];
      const reasons: string[] = [];
      for (let ban = 0; ban < POLICY.recidive.maxretry; ban++) {
        const needed = ban === 0 ? POLICY.maxretry : POLICY.offenderMaxretry;
        let v;
        for (let i = 0; i < needed; i++) v = await recordFailure(store, failure(a, (now += 1000)));
        assert.equal(v!.type, 'banned', `ban ${ban + 1} after ${needed} failures`);
        if (v!.type !== 'banned') return;
        durations.push(v!.ban.until - v!.ban.bannedAt);
        reasons.push(v!.ban.reason);
        assert.equal(v!.ban.previousBans, ban);
        await store.unban(target(a), now);
      }
      const b = POLICY.bantimeMs;
      assert.deepEqual(durations.slice(0, 4), [b, 2 * b, 4 * b, Math.min(8 * b, POLICY.increment.maxtimeMs)]);
      assert.deepEqual(reasons, ['failures', 'failures', 'failures', 'failures', 'recidive']);
      assert.equal(durations[4], Math.max(POLICY.recidive.bantimeMs, Math.min(16 * b, POLICY.increment.maxtimeMs)));
    });

    it("recordActivity: one verdict per entry in the batch's order; each entry counted once", async () => {
      const store = await make();
      assert.deepEqual(await store.recordActivity([], T0), []);
      const n = 1_000;
      for (let round = 1; round < POLICY.maxretry; round++) {
        const batch = Array.from({ length: n }, (_, i) => failures(hostAddress(i), T0 + round, 1));
        const verdicts = await store.recordActivity(batch, T0 + round);
        assert.equal(verdicts.length, n);
        assert.ok(
          verdicts.every((v) => v.type === 'counted' && v.count === round),
          `round ${round}`,
        );
      }
      // the crossing round: every target banned in the same call, the ban index written with it
      const last = await store.recordActivity(
        Array.from({ length: n }, (_, i) => failures(hostAddress(i), T0 + 9, 1)),
        T0 + 9,
      );
      assert.ok(last.every((v, i) => v.type === 'banned' && v.ban.address === hostAddress(i) && v.ban.count === POLICY.maxretry));
      const active = (await collect(store.activeBans(T0 + 10))).flat();
      assert.equal(active.length, n);
      assert.ok(active.every((b) => b.until === T0 + 9 + POLICY.bantimeMs));
      const again = await store.recordActivity([failures(hostAddress(7), T0 + 11, 3), failures('192.0.2.200', T0 + 11, 1)], T0 + 11);
      assert.deepEqual(again, [
        { type: 'already-banned', until: T0 + 9 + POLICY.bantimeMs },
        { type: 'counted', count: 1 },
      ]);
    });

    it('recordActivity: folded failures count as many; the record has their kinds, span and last account', async () => {
      const store = await make();
      const a = activity('198.51.100.90', T0 + 50, {
        failures: 5,
        kinds: { ChallengeResponseFailed: 3, InvalidAccountID: 2 },
        account: '6002',
        first: T0,
        last: T0 + 50,
      });
      const [v] = await store.recordActivity([a], T0 + 60);
      assert.ok(v?.type === 'banned', JSON.stringify(v));
      assert.deepEqual(v.ban, {
        address: '198.51.100.90',
        reason: 'failures',
        kinds: { ChallengeResponseFailed: 3, InvalidAccountID: 2 },
        count: 5,
        firstSeen: T0,
        lastSeen: T0 + 50,
        bannedAt: T0 + 60,
        until: T0 + 60 + POLICY.bantimeMs,
        node: NODE,
        previousBans: 0,
        account: '6002',
      });
      assert.deepEqual(await store.getBan(target('198.51.100.90'), T0 + 61), v.ban);
      // more failures in one batch than it takes: the ban falls at the one that crosses the threshold, as one event
      // at a time would have it, and the rest of the batch came after the ban
      await store.recordActivity([failures('198.51.100.97', T0, 3, 'InvalidAccountID')], T0);
      const [x] = await store.recordActivity(
        [
          activity('198.51.100.97', T0 + 9, {
            failures: 12,
            kinds: { InvalidPassword: 12 },
            account: '6003',
            first: T0 + 1,
            last: T0 + 9,
          }),
        ],
        T0 + 9,
      );
      assert.ok(x?.type === 'banned', JSON.stringify(x));
      assert.deepEqual([x.ban.count, x.ban.kinds], [POLICY.maxretry, { InvalidAccountID: 3, InvalidPassword: 2 }]);
      // the same target twice in one batch: applied in order
      const twice = await store.recordActivity([failures('198.51.100.91', T0, 3), failures('198.51.100.91', T0 + 1, 2)], T0 + 1);
      assert.deepEqual(
        twice.map((x) => x.type),
        ['counted', 'banned'],
      );
    });

    it('recordActivity: challenges, then logins, then failures; a login answers one challenge and may trust', async () => {
      const store = await make();
      const phone = '198.51.100.92';
      // a phone's REGISTER folded into one entry: challenged, logged in, nothing pending, and trusted
      let [v] = await store.recordActivity([activity(phone, T0, { challenges: 2, successes: 2, trust: true })], T0);
      assert.deepEqual(v, { type: 'counted', count: 0 });
      assert.equal(await store.trustedUntil(target(phone), T0 + 1), T0 + POLICY.trust.ttlMs);
      // a login in the same batch as failures raises the threshold before they are counted
      const other = '198.51.100.93';
      [v] = await store.recordActivity(
        [activity(other, T0, { successes: 1, trust: true, failures: POLICY.maxretry, kinds: { InvalidPassword: POLICY.maxretry } })],
        T0,
      );
      assert.deepEqual(v, { type: 'counted', count: POLICY.maxretry });
      [v] = await store.recordActivity([failures(other, T0 + 1, POLICY.trust.maxretry - POLICY.maxretry)], T0 + 1);
      assert.ok(v?.type === 'banned' && v.ban.count === POLICY.trust.maxretry, JSON.stringify(v));
      // unanswered challenges pile up; a scanner's burst in one batch is banned as one
      [v] = await store.recordActivity([activity('198.51.100.94', T0, { challenges: 3, successes: 1 })], T0);
      assert.deepEqual(v, { type: 'counted', count: 2 });
      [v] = await store.recordActivity([activity('198.51.100.95', T0, { challenges: POLICY.scanner.maxretry, first: T0 - 5 })], T0);
      assert.ok(v?.type === 'banned', JSON.stringify(v));
      assert.deepEqual(
        [v.ban.reason, v.ban.kinds, v.ban.count],
        ['scanner', { ChallengeSent: POLICY.scanner.maxretry }, POLICY.scanner.maxretry],
      );
      // challenges older than scanner.findtime are forgotten
      await store.recordActivity([activity('198.51.100.96', T0, { challenges: POLICY.scanner.maxretry - 1 })], T0);
      [v] = await store.recordActivity(
        [activity('198.51.100.96', T0 + POLICY.scanner.findtimeMs, { challenges: 1 })],
        T0 + POLICY.scanner.findtimeMs,
      );
      assert.deepEqual(v, { type: 'counted', count: 1 });
    });

    it('recordActivity: a network (an IPv6 /64) is counted and banned as one target', async () => {
      const store = await make();
      const net = target('2001:db8:1:2::/64');
      const batch = (at: number): TargetActivity[] => [{ ...failures('2001:db8:1:2::/64', at, 2), target: net }];
      assert.deepEqual(await store.recordActivity(batch(T0), T0), [{ type: 'counted', count: 2 }]);
      assert.deepEqual(await store.recordActivity(batch(T0 + 1), T0 + 1), [
        { type: 'counted', count: 4, brink: { remaining: 1, until: T0 + POLICY.findtimeMs } },
      ]);
      const [v] = await store.recordActivity(batch(T0 + 2), T0 + 2);
      assert.ok(v?.type === 'banned' && v.ban.address === '2001:db8:1:2::/64', JSON.stringify(v));
      assert.deepEqual(
        (await collect(store.activeBans(T0 + 3))).flat().map((b) => b.address),
        ['2001:db8:1:2::/64'],
      );
      assert.equal(await store.getBan(target('2001:db8:1:2::1'), T0 + 3), null, 'an address of the network is another key');
    });

    it('a network holding a trusted address is never banned whole: the source of its failures is, and its count starts afresh', async () => {
      const store = await make();
      const net = target('2001:db8:5:6::/64') as IpPrefix;
      const from = (a: string, at: number, extra: Partial<TargetActivity>): TargetActivity =>
        activity('2001:db8:5:6::/64', at, { source: addr(a), ...extra });
      // the phone logs in from inside the prefix: the prefix now holds a trusted address
      await store.recordActivity([from('2001:db8:5:6::20', T0, { challenges: 1, successes: 1, trust: true })], T0);
      assert.ok((await store.trustedUntil(net, T0 + 1))! > T0);
      const [v] = await store.recordActivity(
        [
          from('2001:db8:5:6::66', T0 + 1, {
            failures: POLICY.trust.maxretry,
            kinds: { ChallengeResponseFailed: POLICY.trust.maxretry },
            account: '6002',
          }),
        ],
        T0 + 1,
      );
      assert.ok(v?.type === 'banned', JSON.stringify(v));
      assert.equal(v.target?.text, '2001:db8:5:6::66');
      assert.deepEqual(
        [v.ban.address, v.ban.reason, v.ban.count, v.ban.kinds, v.ban.account],
        ['2001:db8:5:6::66', 'failures', POLICY.trust.maxretry, { ChallengeResponseFailed: POLICY.trust.maxretry }, '6002'],
      );
      assert.equal(await store.getBan(net, T0 + 2), null, 'the prefix is not banned');
      assert.equal((await store.getBan(target('2001:db8:5:6::66'), T0 + 2))?.until, v.ban.until);
      assert.deepEqual(
        (await collect(store.activeBans(T0 + 2))).flat().map((b) => b.address),
        ['2001:db8:5:6::66'],
      );
      // the prefix counts afresh; a crossing by an address banned already reports its ban in force
      const [w] = await store.recordActivity([from('2001:db8:5:6::77', T0 + 3, { failures: 1, kinds: { InvalidAccountID: 1 } })], T0 + 3);
      assert.deepEqual(w, { type: 'counted', count: 1 });
      const [x] = await store.recordActivity(
        [from('2001:db8:5:6::66', T0 + 4, { failures: POLICY.trust.maxretry, kinds: { InvalidAccountID: POLICY.trust.maxretry } })],
        T0 + 4,
      );
      assert.ok(x?.type === 'already-banned' && x.until === v.ban.until && x.target?.text === '2001:db8:5:6::66', JSON.stringify(x));
      // without trust a prefix is banned whole, at maxretry
      const [y] = await store.recordActivity(
        [
          activity('2001:db8:7:8::/64', T0, {
            source: addr('2001:db8:7:8::9'),
            failures: POLICY.maxretry,
            kinds: { InvalidPassword: POLICY.maxretry },
          }),
        ],
        T0,
      );
      assert.ok(y?.type === 'banned' && y.ban.address === '2001:db8:7:8::/64' && y.target === undefined, JSON.stringify(y));
    });

    it("subnet escalation: the maxbans-th ban of a subnet's addresses within findtime bans the subnet, naming them", async () => {
      const store = await make({ ...POLICY, subnet: { maxbans: 3, bantimeMs: 86_400_000 } });
      const subnet = target('198.51.100.0/24') as IpPrefix;
      const crossing = (a: string, at: number): TargetActivity => ({ ...failures(a, at, POLICY.maxretry), subnet });
      const members = ['198.51.100.1', '198.51.100.2', '198.51.100.3'];
      for (const [i, a] of members.slice(0, 2).entries()) {
        const [v] = await store.recordActivity([crossing(a, T0 + i)], T0 + i);
        assert.ok(v?.type === 'banned' && v.subnet === undefined, JSON.stringify(v));
      }
      // the same member banned again (after an unban) counts once
      await store.unban(target(members[1]!), T0 + 3);
      const [again] = await store.recordActivity([crossing(members[1]!, T0 + 4)], T0 + 4);
      assert.ok(again?.type === 'banned' && again.subnet === undefined, JSON.stringify(again));
      const [v] = await store.recordActivity([crossing(members[2]!, T0 + 5)], T0 + 5);
      assert.ok(v?.type === 'banned' && v.subnet, JSON.stringify(v));
      assert.equal(v.subnet.target.text, '198.51.100.0/24');
      const expected = {
        address: '198.51.100.0/24',
        reason: 'subnet',
        kinds: {},
        count: 3,
        firstSeen: T0,
        lastSeen: T0 + 5,
        bannedAt: T0 + 5,
        until: T0 + 5 + 86_400_000,
        node: NODE,
        previousBans: 0,
        members: [members[0], members[1], members[2]],
      };
      assert.deepEqual(v.subnet.ban, expected);
      assert.deepEqual(await store.getBan(subnet, T0 + 6), expected);
      assert.ok((await collect(store.activeBans(T0 + 6))).flat().some((b) => b.address === '198.51.100.0/24'));
      // banned already: a fourth ban adds nothing
      const [w] = await store.recordActivity([crossing('198.51.100.4', T0 + 7)], T0 + 7);
      assert.ok(w?.type === 'banned' && w.subnet === undefined, JSON.stringify(w));
      // IPv6: prefixes of a /48
      const s6 = target('2001:db8:9::/48') as IpPrefix;
      let last;
      for (let i = 0; i < 3; i++) {
        [last] = await store.recordActivity([{ ...failures(`2001:db8:9:${i}::/64`, T0 + i, POLICY.maxretry), subnet: s6 }], T0 + i);
      }
      assert.ok(
        last?.type === 'banned' && last.subnet?.ban.members?.join() === '2001:db8:9::/64,2001:db8:9:1::/64,2001:db8:9:2::/64',
        JSON.stringify(last),
      );
    });

    it('subnet escalation: bans further apart than findtime, a subnet holding a trusted address, or escalation off ban no subnet', async () => {
      const policy = { ...POLICY, subnet: { maxbans: 2, bantimeMs: 86_400_000 } };
      const store = await make(policy);
      const crossing = (a: string, subnet: string, at: number): TargetActivity => ({
        ...failures(a, at, POLICY.maxretry),
        subnet: target(subnet) as IpPrefix,
      });
      const [a] = await store.recordActivity([crossing('203.0.113.1', '203.0.113.0/24', T0)], T0);
      const [b] = await store.recordActivity([crossing('203.0.113.2', '203.0.113.0/24', T0 + POLICY.findtimeMs)], T0 + POLICY.findtimeMs);
      assert.ok(a?.type === 'banned' && !a.subnet && b?.type === 'banned' && !b.subnet, 'findtime apart');
      // a phone logged in from the subnet: it is never banned whole while that trust lasts
      await store.recordActivity(
        [{ ...activity('192.0.2.20', T0, { successes: 1, trust: true }), subnet: target('192.0.2.0/24') as IpPrefix }],
        T0,
      );
      for (const [i, x] of ['192.0.2.1', '192.0.2.2', '192.0.2.3'].entries()) {
        const [v] = await store.recordActivity([crossing(x, '192.0.2.0/24', T0 + i)], T0 + i);
        assert.ok(v?.type === 'banned' && !v.subnet, `${x}: ${JSON.stringify(v)}`);
      }
      assert.equal(await store.getBan(target('192.0.2.0/24'), T0 + 5), null);
      // maxbans 0: the subnet a caller names is not even counted
      const off = await make();
      for (const [i, x] of ['198.18.5.1', '198.18.5.2', '198.18.5.3'].entries()) {
        const [v] = await off.recordActivity([crossing(x, '198.18.5.0/24', T0 + i)], T0 + i);
        assert.ok(v?.type === 'banned' && !v.subnet);
      }
    });

    it('failures and challenges of one entry both crossing: banned for its failures, as one event at a time would have it', async () => {
      const store = await make();
      const [v] = await store.recordActivity(
        [
          activity('198.51.100.98', T0, {
            challenges: POLICY.scanner.maxretry,
            failures: POLICY.scanner.maxretry,
            kinds: { ChallengeResponseFailed: POLICY.scanner.maxretry },
          }),
        ],
        T0,
      );
      assert.ok(v?.type === 'banned', JSON.stringify(v));
      assert.deepEqual([v.ban.reason, v.ban.count], ['failures', POLICY.maxretry]);
    });

    it('on the brink: a counted target within the heaviest weight of its threshold, until its oldest failure leaves findtime', async () => {
      const store = await make();
      const brinkOf = async (activity: TargetActivity, now: number): Promise<unknown> => {
        const [v] = await store.recordActivity([activity], now);
        assert.equal(v?.type, 'counted', JSON.stringify(v));
        return v?.type === 'counted' ? v.brink : null;
      };
      // a stranger, then a window: nothing until one failure short, counted from the oldest failure kept
      const a = '198.51.100.150';
      assert.equal(await brinkOf(failures(a, T0, 3), T0), undefined);
      assert.deepEqual(await brinkOf(failures(a, T0 + 500, 1), T0 + 500), { remaining: 1, until: T0 + POLICY.findtimeMs });
      // and what it promises holds: the next failure bans
      assert.equal((await store.recordActivity([failures(a, T0 + 600, 1)], T0 + 600))[0]?.type, 'banned');
      // a brute-forcer's ChallengeSent before each guess (the general path) changes nothing
      const b = '198.51.100.151';
      let last: unknown;
      for (let i = 0; i < POLICY.maxretry - 1; i++) {
        await store.recordActivity([activity(b, T0 + i * 10, { challenges: 1 })], T0 + i * 10);
        last = await brinkOf({ ...failures(b, T0 + i * 10 + 1, 1), first: T0 + i * 10 + 1 }, T0 + i * 10 + 1);
      }
      assert.deepEqual(last, { remaining: 1, until: T0 + 1 + POLICY.findtimeMs });
      // a challenge alone says nothing of the failures
      assert.equal(await brinkOf(activity(b, T0 + 100, { challenges: 1 }), T0 + 100), undefined);
      // as the oldest failure leaves findtime the count drops, and the brink moves on with it
      const c = '198.51.100.152';
      await store.recordActivity([failures(c, T0, 1)], T0);
      await store.recordActivity([failures(c, T0 + 1_000, 3)], T0 + 1_000);
      const later = T0 + POLICY.findtimeMs + 10;
      assert.deepEqual(await brinkOf(failures(c, later, 1), later), { remaining: 1, until: T0 + 1_000 + POLICY.findtimeMs });
      // a trusted target's ban is the store's to place: never on the brink
      const d = '198.51.100.153';
      await recordSuccess(store, { address: addr(d), now: T0, trust: true });
      assert.equal(await brinkOf(failures(d, T0 + 1, POLICY.trust.maxretry - 1), T0 + 1), undefined);
      // a heavier failure reaches further
      const heavy = await make({ ...POLICY, heaviestWeight: 3 });
      const [v] = await heavy.recordActivity([failures('198.51.100.154', T0, 2)], T0);
      assert.deepEqual(v, { type: 'counted', count: 2, brink: { remaining: 3, until: T0 + POLICY.findtimeMs } });
    });

    it('recordActivity refuses a source outside its target and a subnet not around it', async () => {
      const store = await make();
      const bad: TargetActivity[] = [
        activity('2001:db8:1:2::/64', T0, { source: addr('2001:db8:1:3::1') }),
        activity('198.51.100.7', T0, { subnet: target('198.51.101.0/24') as IpPrefix }),
        activity('198.51.100.0/24', T0, { subnet: target('198.51.100.0/24') as IpPrefix }),
        activity('198.51.100.7', T0, { source: { ...addr('198.51.100.7') } as IpAddress }),
      ];
      for (const b of bad) await assert.rejects(store.recordActivity([b], T0), RangeError);
    });

    it('recordActivity refuses a batch it cannot trust, before counting any of it', async () => {
      const store = await make();
      const forged = {
        ...failures('192.0.2.50', T0, 1),
        target: { kind: 'address', family: 4, text: '192.0.2.50', bits: 32, words: [0] },
      } as unknown as TargetActivity;
      const bad: TargetActivity[] = [
        forged,
        failures('192.0.2.51', T0, -1),
        activity('192.0.2.52', T0, { challenges: 1.5 }),
        activity('192.0.2.53', T0 + 1, { first: T0 + 1, last: T0 }),
        failures('192.0.2.54', T0 + 0.5, 1),
      ];
      for (const b of bad) await assert.rejects(store.recordActivity([failures('192.0.2.55', T0, 1), b], T0), RangeError);
      await assert.rejects(store.recordActivity([failures('192.0.2.55', T0, 1)], Number.NaN), RangeError);
      assert.deepEqual(await store.recentFailures(target('192.0.2.55')), [], 'nothing of a refused batch was counted');
    });

    it('restoreBans: a ban with one history entry where none is in force; one in force extended without another; never twice', async () => {
      const store = await make();
      const [fresh, failed, manual, net] = [target('192.0.2.70'), target('192.0.2.71'), target('2001:db8::70'), target('203.0.113.0/24')];
      const banned = await store.recordActivity([failures('192.0.2.71', T0, POLICY.maxretry)], T0);
      assert.equal(banned[0]!.type, 'banned');
      const until = T0 + POLICY.bantimeMs;
      await store.ban({ target: manual, reason: 'manual', durationMs: 10 * POLICY.bantimeMs, now: T0 });
      const now = T0 + 1_000;
      const bans = [
        { target: fresh, until: now + 7_200_000 },
        { target: failed, until: until + 1_500 },
        { target: manual, until: now + POLICY.bantimeMs },
        { target: net, until: now + 60_000 },
      ];
      assert.deepEqual(await store.restoreBans(bans, 'restored', now), { written: 2, extended: 1, covered: 1 });

      const f = await store.getBan(fresh, now);
      assert.equal(f?.reason, 'restored');
      assert.equal(f?.until, now + 7_200_000);
      assert.equal(f?.node, NODE);
      assert.equal((await store.history(fresh)).length, 1);
      assert.equal((await store.getBan(net, now))?.until, now + 60_000);
      const e = await store.getBan(failed, now);
      assert.equal(e?.reason, 'failures', 'a ban in force keeps what it was for');
      assert.equal(e?.until, until + 1_500, 'and lasts as long as the kernel enforces it');
      assert.equal((await store.history(failed)).length, 1, 'with no second history entry');
      assert.equal((await store.getBan(manual, now))?.until, T0 + 10 * POLICY.bantimeMs, 'a longer ban is kept as it is');

      // every node of a fleet re-seeds the same bans: nothing more happens
      assert.deepEqual(await store.restoreBans(bans, 'restored', now + 10), { written: 0, extended: 0, covered: 4 });
      for (const t of [fresh, failed, manual, net]) assert.equal((await store.history(t)).length, 1, t.text);
      const active = (await collect(store.activeBans(now)))
        .flat()
        .map((b) => b.address)
        .sort();
      assert.deepEqual(active, ['192.0.2.70', '192.0.2.71', '2001:db8::70', '203.0.113.0/24']);
      assert.deepEqual(await store.recordActivity([failures('192.0.2.70', now + 20, 1)], now + 20), [
        { type: 'already-banned', until: now + 7_200_000 },
      ]);
    });

    it('has an identity that stays the same while it keeps its data', async () => {
      const store = await make();
      const { id, created } = await store.identity();
      assert.match(id, /^[0-9a-f]{24}$/);
      assert.equal(created, true, 'a fresh store had none');
      assert.deepEqual(await store.identity(), { id, created: false });
    });
  });
}
