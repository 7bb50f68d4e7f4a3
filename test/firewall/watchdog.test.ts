// FirewallWatchdog against a scripted firewall: what counts as a loss, what does not, and that its loop survives a
// failing check and stops cleanly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTarget, type IpTarget } from '../../src/net/ip.js';
import { FirewallWatchdog, type WatchedFirewall } from '../../src/firewall/watchdog.js';
import { createLogger } from '../../src/log.js';

const t = (text: string): IpTarget => parseTarget(text)!;

function setup(fw: Partial<WatchedFirewall>, expected: () => IpTarget[] = () => [], restore = async (): Promise<void> => undefined) {
  const restores: string[][] = [];
  const firewall: WatchedFirewall = { gaps: async () => [], missingFrom: async () => [], ...fw };
  const dog = new FirewallWatchdog({
    firewall,
    expected,
    intervalMs: 10,
    logger: createLogger('silent'),
    restore: async (missing) => {
      restores.push([...missing]);
      await restore();
    },
  });
  return { dog, restores };
}

test('a table with a missing part is restored, naming the part', async () => {
  const { dog, restores } = setup({ gaps: async () => ['table inet ami_guard'] });
  assert.deepEqual(await dog.check(), ['table inet ami_guard']);
  assert.deepEqual(restores, [['table inet ami_guard']]);
});

test('no known bans: the sets are not looked into', async () => {
  let lookups = 0;
  const { dog, restores } = setup({ missingFrom: async () => (lookups++, ['banned_v4']) });
  assert.deepEqual(await dog.check(), []);
  assert.equal(lookups, 0);
  assert.deepEqual(restores, []);
});

test('a known ban missing from its set is a loss', async () => {
  const { dog, restores } = setup({ missingFrom: async () => ['banned_v6'] }, () => [t('fd00::66')]);
  assert.deepEqual(await dog.check(), ['elements of set banned_v6']);
  assert.deepEqual(restores, [['elements of set banned_v6']]);
});

test('a ban lifted while it was looked up is not a loss', async () => {
  let sample = [t('198.51.100.7')];
  const { dog, restores } = setup(
    {
      missingFrom: async () => {
        sample = [];
        return ['banned_v4'];
      },
    },
    () => sample,
  );
  assert.deepEqual(await dog.check(), []);
  assert.deepEqual(restores, []);
});

test('the loop goes on after a failing check and a failing restore, and stop waits for a restore under way', async () => {
  let checks = 0;
  let release: () => void = () => undefined;
  let restoring = false;
  const { dog, restores } = setup(
    {
      gaps: async () => {
        checks++;
        if (checks === 1) throw new Error('nft not found');
        return ['set banned_v4'];
      },
    },
    () => [],
    async () => {
      if (restores.length === 1) throw new Error('nft refused the table');
      restoring = true;
      await new Promise<void>((r) => (release = r));
      restoring = false;
    },
  );
  dog.start();
  const deadline = Date.now() + 5_000;
  while (!restoring && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.ok(restoring, `checks: ${checks}, restores: ${restores.length}`);
  assert.ok(checks >= 3);
  const stopped = dog.stop();
  setTimeout(() => release(), 50);
  await stopped;
  assert.equal(restoring, false, 'stop resolved only after the restore finished');
  const after = checks;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(checks, after, 'no check after stop');
});
