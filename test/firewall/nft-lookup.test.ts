// What the watchdog asks of NftFirewall, against the real kernel in a throwaway namespace: which parts of the table
// are gone, and which sets lack a given ban.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { parseTarget, type IpTarget } from '../../src/net/ip.js';
import { NftFirewall } from '../../src/firewall/nft.js';
import { createNetns, type Netns } from '../support/netns.js';

const t = (text: string): IpTarget => parseTarget(text)!;

async function setup(tc: TestContext): Promise<{ ns: Netns; fw: NftFirewall }> {
  const ns = await createNetns((fn) => tc.after(fn));
  const fw = new NftFirewall({ netns: ns.name });
  await fw.init();
  return { ns, fw };
}

test('gaps() names what is missing, and nothing once init() has repaired it', async (tc) => {
  const { ns, fw } = await setup(tc);
  assert.deepEqual(await fw.gaps(), []);
  await ns.nft('flush chain inet ami_guard prerouting\ndelete set inet ami_guard banned_v6\n');
  assert.deepEqual((await fw.gaps()).sort(), [
    'drop rule for @banned_v4',
    'drop rule for @banned_v4_net',
    'drop rule for @banned_v6_net',
    'set banned_v6',
  ]);
  await ns.nft('delete table inet ami_guard\n');
  assert.deepEqual(await fw.gaps(), ['table inet ami_guard']);
  await fw.init();
  assert.deepEqual(await fw.gaps(), []);
});

test('missingFrom() finds hosts and networks (also inside a wider network) and names the sets that lost them', async (tc) => {
  const { ns, fw } = await setup(tc);
  const bans = ['198.51.100.7', 'fd00::66', '203.0.113.0/24', '2001:db8::/48'].map((a) => ({ target: t(a), timeoutMs: 600_000 }));
  await fw.add(bans);
  assert.deepEqual(await fw.missingFrom(bans.map((b) => b.target)), []);
  // a network folded into a wider one is found through it
  await fw.add([
    { target: t('10.0.0.0/8'), timeoutMs: 600_000 },
    { target: t('10.1.0.0/16'), timeoutMs: 600_000 },
  ]);
  assert.deepEqual(await fw.missingFrom([t('10.1.0.0/16')]), []);

  await ns.nft('flush set inet ami_guard banned_v4\nflush set inet ami_guard banned_v6_net\n');
  assert.deepEqual((await fw.missingFrom(bans.map((b) => b.target))).sort(), ['banned_v4', 'banned_v6_net']);
  assert.deepEqual(await fw.missingFrom([t('fd00::66')]), []);
  // a lookup queued behind a write sees that write
  const adding = fw.add([{ target: t('198.51.100.7'), timeoutMs: 600_000 }]);
  assert.deepEqual(await fw.missingFrom([t('198.51.100.7')]), []);
  await adding;
});
