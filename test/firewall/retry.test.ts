// RetryingFirewall against a scripted inner firewall: which failures are retried, for how long, with which timeouts,
// and how a later write or a shutdown ends a retry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTarget, type IpTarget } from '../../src/net/ip.js';
import type { Firewall, FirewallBan } from '../../src/firewall/firewall.js';
import { RetryingFirewall } from '../../src/firewall/retry.js';
import { NftError } from '../../src/firewall/nft-runner.js';
import { createLogger } from '../../src/log.js';

const t = (text: string): IpTarget => parseTarget(text)!;
const busy = (): Error =>
  new Error('nft could not ban 198.51.100.7: busy', {
    cause: new NftError('nft failed (exit 1): busy', 'script', 'Device or resource busy'),
  });

type Call = { op: 'add'; bans: FirewallBan[] } | { op: 'delete'; targets: IpTarget[] };

/** Fails the next `failures` writes with `error()`, records every call. */
class ScriptedFirewall implements Firewall {
  readonly calls: Call[] = [];
  failures = 0;
  error: () => Error = busy;

  private next(): Promise<void> {
    if (this.failures > 0) {
      this.failures--;
      return Promise.reject(this.error());
    }
    return Promise.resolve();
  }

  init = async (): Promise<void> => undefined;
  add(bans: readonly FirewallBan[]): Promise<void> {
    this.calls.push({ op: 'add', bans: [...bans] });
    return this.next();
  }
  delete(targets: readonly IpTarget[]): Promise<void> {
    this.calls.push({ op: 'delete', targets: [...targets] });
    return this.next();
  }
  reconcile = async () => ({ added: 0, removed: 0, total: 0, removedTargets: [] });
  commit = async (): Promise<void> => undefined;
  list = async () => [];
  present = async () => true;
  shutdown = async (): Promise<void> => undefined;
}

function setup(o: { attempts?: number; firstDelayMs?: number } = {}) {
  const inner = new ScriptedFirewall();
  let clock = 1_000_000;
  let retries = 0;
  const fw = new RetryingFirewall(inner, {
    logger: createLogger('silent'),
    attempts: o.attempts ?? 4,
    firstDelayMs: o.firstDelayMs ?? 5,
    onRetry: () => retries++,
    // every reading of the clock is a second later: the timeouts below show which reading each try used
    now: () => (clock += 1000),
  });
  return { inner, fw, retries: () => retries };
}

test('nft failing twice: the ban lands on the third try, each try with the time left of the original ban', async () => {
  const { inner, fw, retries } = setup();
  inner.failures = 2;
  await fw.add([{ target: t('198.51.100.7'), timeoutMs: 60_000 }]);
  const timeouts = inner.calls.map((c) => (c.op === 'add' ? c.bans[0]!.timeoutMs : NaN));
  assert.deepEqual(timeouts, [59_000, 58_000, 57_000]);
  assert.equal(retries(), 2);
});

test('a refusal that never reached nft is not retried', async () => {
  const { inner, fw, retries } = setup();
  inner.failures = 1;
  inner.error = () => new Error('refusing non-canonical nft element "1.2.3.04"');
  await assert.rejects(fw.add([{ target: t('198.51.100.7'), timeoutMs: 60_000 }]), /non-canonical/);
  assert.equal(inner.calls.length, 1);
  assert.equal(retries(), 0);
});

test('nft failing every time: given up after the configured tries with the last error', async () => {
  const { inner, fw, retries } = setup({ attempts: 3 });
  inner.failures = 10;
  await assert.rejects(fw.delete([t('198.51.100.7')]), (err: Error) => err.cause instanceof NftError);
  assert.equal(inner.calls.length, 3);
  assert.equal(retries(), 2);
});

test('a retried ban gives way to a later unban of the same address, and the rest of its batch goes on', async () => {
  const { inner, fw } = setup({ firstDelayMs: 50 });
  inner.failures = 1;
  const add = fw.add([
    { target: t('198.51.100.7'), timeoutMs: 60_000 },
    { target: t('203.0.113.9'), timeoutMs: 60_000 },
  ]);
  await new Promise((r) => setTimeout(r, 10));
  await fw.delete([t('198.51.100.7')]);
  await add;
  assert.deepEqual(
    inner.calls.map((c) => [c.op, (c.op === 'add' ? c.bans.map((b) => b.target) : c.targets).map((x) => x.text)]),
    [
      ['add', ['198.51.100.7', '203.0.113.9']],
      ['delete', ['198.51.100.7']],
      ['add', ['203.0.113.9']],
    ],
  );
});

test('a ban whose time ran out while retrying is dropped, not written with a timeout of its own', async () => {
  const { inner, fw } = setup();
  inner.failures = 1;
  // the clock moves a second per reading: the ban has ended by the retry
  await fw.add([{ target: t('198.51.100.7'), timeoutMs: 1_500 }]);
  assert.equal(inner.calls.length, 1);
});

test('shutdown ends the wait of a retry: it fails with its last error and writes nothing more', async () => {
  const { inner, fw } = setup({ firstDelayMs: 60_000 });
  inner.failures = 1;
  const add = fw.add([{ target: t('198.51.100.7'), timeoutMs: 3_600_000 }]);
  await new Promise((r) => setTimeout(r, 10));
  const started = Date.now();
  await fw.shutdown();
  await assert.rejects(add, /busy/);
  assert.ok(Date.now() - started < 1_000);
  assert.equal(inner.calls.length, 1);
});
