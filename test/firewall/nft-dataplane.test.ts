// Packets, not just set contents: a "pbx" namespace holds our table and a UDP listener, an "attacker" namespace
// sends to it over a veth pair. A banned source must be dropped, also on a flow conntrack already tracks.
// Non-arrival is proven without sleeping: after the banned datagram we send a control datagram from an unbanned
// address on the same path and wait for it and for our drop counter; by then the banned one was counted and dropped.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { parseTarget, type IpTarget } from '../../src/net/ip.js';
import { NftFirewall } from '../../src/firewall/nft.js';
import { createNetns, vethPair, waitFor, type Netns } from '../support/netns.js';
import { sendDatagram, startListener, startSender, type LineProcess } from './udp-peers.js';

const t = (text: string): IpTarget => parseTarget(text)!;
const PBX = { v4: '198.18.0.1', v6: '2001:db8:18::1' };
const ATTACKER = { v4: '198.18.0.11', v6: '2001:db8:18::11' };
const CONTROL = { v4: '198.18.0.12', v6: '2001:db8:18::12' };
const SIP = 5060;
const SOURCE_PORT = 40_000;

interface Lab {
  pbx: Netns;
  fw: NftFirewall;
  listener: LineProcess;
  sender: LineProcess;
}

async function lab(tc: TestContext, operatorRuleset = ''): Promise<Lab> {
  const cleanup = (fn: () => Promise<void>) => tc.after(fn);
  const pbx = await createNetns(cleanup);
  const attacker = await createNetns(cleanup);
  await vethPair(
    { ns: pbx, v4: [`${PBX.v4}/24`], v6: [`${PBX.v6}/64`] },
    { ns: attacker, v4: [`${ATTACKER.v4}/24`, `${CONTROL.v4}/24`], v6: [`${ATTACKER.v6}/64`, `${CONTROL.v6}/64`] },
  );
  if (operatorRuleset) await pbx.nft(operatorRuleset);
  const fw = new NftFirewall({ netns: pbx.name });
  await fw.init();
  const listener = await startListener(pbx, SIP);
  const sender = await startSender(attacker, [ATTACKER.v4, CONTROL.v4, ATTACKER.v6, CONTROL.v6], SOURCE_PORT);
  return { pbx, fw, listener, sender };
}

async function dropCounters(ns: Netns): Promise<{ 4: number; 6: number }> {
  const json = JSON.parse(await ns.execOk('nft', ['-j', 'list', 'chain', 'inet', 'ami_guard', 'prerouting'])) as {
    nftables: { rule?: { expr: Record<string, unknown>[] } }[];
  };
  const count = (set: string) => {
    const rule = json.nftables.find((i) => JSON.stringify(i.rule?.expr ?? []).includes(`"@${set}"`))?.rule;
    const counter = rule?.expr.find((e) => 'counter' in e)?.['counter'] as { packets: number } | undefined;
    return counter?.packets ?? 0;
  };
  return { 4: count('banned_v4') + count('banned_v4_net'), 6: count('banned_v6') + count('banned_v6_net') };
}

/** sends `msg` from `from` and waits until the listener has it */
async function delivered(l: Lab, from: string, to: string, msg: string): Promise<void> {
  await sendDatagram(l.sender, { from, to, port: SIP, msg });
  await l.listener.waitFor((e) => e.event === 'got' && e.msg === msg && e.from === from, `${msg} from ${from}`);
}

/** sends `msg` from a banned source and proves it was dropped by our rule, not merely late */
async function dropped(l: Lab, family: 4 | 6, msg: string): Promise<void> {
  const [from, control, to] = family === 4 ? [ATTACKER.v4, CONTROL.v4, PBX.v4] : [ATTACKER.v6, CONTROL.v6, PBX.v6];
  const before = (await dropCounters(l.pbx))[family];
  await sendDatagram(l.sender, { from, to, port: SIP, msg });
  await delivered(l, control, to, `control-${msg}`);
  await waitFor(
    `IPv${family} drop counter to pass ${before}`,
    async () => ((await dropCounters(l.pbx))[family] > before ? true : undefined),
    5000,
  );
  assert.equal(
    l.listener.has((e) => e.event === 'got' && e.msg === msg),
    false,
    `${msg} reached the listener`,
  );
}

test('a banned source is dropped before reaching a listener (IPv4 and IPv6); unbanning restores it', async (tc) => {
  const l = await lab(tc);
  await delivered(l, ATTACKER.v4, PBX.v4, 'before-ban-v4');
  await delivered(l, ATTACKER.v6, PBX.v6, 'before-ban-v6');
  assert.deepEqual(await dropCounters(l.pbx), { 4: 0, 6: 0 });

  await l.fw.add([
    { target: t(ATTACKER.v4), timeoutMs: 600_000 },
    { target: t(ATTACKER.v6), timeoutMs: 600_000 },
  ]);
  await dropped(l, 4, 'banned-v4');
  await dropped(l, 6, 'banned-v6');

  await l.fw.delete([t(ATTACKER.v4), t(ATTACKER.v6)]);
  await delivered(l, ATTACKER.v4, PBX.v4, 'after-unban-v4');
  await delivered(l, ATTACKER.v6, PBX.v6, 'after-unban-v6');
});

test('a network ban drops every address inside it', async (tc) => {
  const l = await lab(tc);
  await l.fw.add([{ target: t('198.18.0.8/29'), timeoutMs: 600_000 }]); // .8–.15: attacker .11 and control .12
  await sendDatagram(l.sender, { from: ATTACKER.v4, to: PBX.v4, port: SIP, msg: 'in-net-1' });
  await sendDatagram(l.sender, { from: CONTROL.v4, to: PBX.v4, port: SIP, msg: 'in-net-2' });
  await waitFor('both datagrams counted', async () => ((await dropCounters(l.pbx))[4] >= 2 ? true : undefined), 5000);
  await l.fw.delete([t('198.18.0.8/29')]);
  await delivered(l, CONTROL.v4, PBX.v4, 'after-unban');
  assert.equal(
    l.listener.has((e) => e.msg === 'in-net-1' || e.msg === 'in-net-2'),
    false,
  );
});

test('a ban also stops a UDP flow conntrack already holds as established', async (tc) => {
  // the operator's own firewall accepts established traffic; our raw-priority drop must still win (fail2ban #2503)
  const l = await lab(
    tc,
    `table inet host {
    chain input { type filter hook input priority 0; policy drop;
      ct state established,related accept
      udp dport ${SIP} ct state new accept
    }
  }\n`,
  );
  await delivered(l, ATTACKER.v4, PBX.v4, 'hello');
  await l.sender.waitFor((e) => e.event === 'reply' && e.msg === 'ack:hello', 'the listener to answer');
  await delivered(l, ATTACKER.v4, PBX.v4, 'hello-again');
  const flows = await l.pbx.execOk('conntrack', ['-L', '-p', 'udp', '--orig-src', ATTACKER.v4, '--orig-port-src', String(SOURCE_PORT)]);
  assert.match(flows, new RegExp(`dport=${SIP} `), 'the flow is tracked');
  assert.doesNotMatch(flows, /UNREPLIED/, 'the flow has seen a reply, so conntrack counts it as established');

  await l.fw.add([{ target: t(ATTACKER.v4), timeoutMs: 600_000 }]);
  await dropped(l, 4, 'on-established-flow');
  assert.equal(
    l.sender.has((e) => e.event === 'reply' && e.msg === 'ack:on-established-flow'),
    false,
  );
});
