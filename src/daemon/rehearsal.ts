// The first ban of a fresh process is the one that matters most (a password guesser that has just started) and the
// slowest: every function on its way runs for the first time, and V8 compiles each at its first call. Against the
// lab's Asterisk, the svcrack event that crossed maxretry reached the nft writer 3.0–3.7 ms after it was read, with a
// guess every ~6 ms. So before the intake starts, the daemon rehearses one ban through the same code on throwaway
// parts: AMI text as Asterisk writes it through the frame reader and the intake, a Daemon of its own deciding with the
// running policy, an embedded store, and an nft firewall whose runner keeps what it is given instead of running it.
// Nothing reaches the kernel, the store, the fleet, the webhook or the log.
import { AmiFrameReader } from '../ami/frame-reader.js';
import { Intake } from '../events/intake.js';
import { NftFirewall } from '../firewall/nft.js';
import type { NftRunner } from '../firewall/nft-runner.js';
import { createLogger } from '../log.js';
import { Metrics } from '../metrics.js';
import { parseAddress, type IpAddress } from '../net/ip.js';
import type { Policy } from '../policy/policy.js';
import { MemoryStore } from '../store/memory-store.js';
import { Daemon } from './daemon.js';

/**
 * Documentation addresses (RFC 5737): no real sender. A ban of one only ever exists in the rehearsal's own parts, but
 * the first the policy would ban is taken, for a host on such a network (a lab, a test machine) protects its own
 * addresses and gateway from any ban.
 */
const REHEARSAL_ADDRESSES = ['192.0.2.1', '198.51.100.1', '203.0.113.1'].map((a) => parseAddress(a)!);
/** a policy asking for more failures than this rehearses counting only */
const MAX_FAILURES = 64;

/** Asterisk 22's ChallengeResponseFailed as pjsip writes it (headers in its order; the normaliser checks it) */
function challengeResponseFailed(address: IpAddress, i: number, at: Date): string {
  return (
    'Event: ChallengeResponseFailed\r\nPrivilege: security,all\r\n' +
    `EventTV: ${at.toISOString().replace('Z', '+0000')}\r\nSeverity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\n` +
    `AccountID: 6001\r\nSessionID: rehearsal-${i}\r\nLocalAddress: IPV4/UDP/127.0.0.1/5060\r\n` +
    `RemoteAddress: IPV4/UDP/${address.text}/5060\r\nChallenge: 1/rehearsal\r\n` +
    `Response: ${i.toString(16).padStart(32, '0')}\r\nExpectedResponse: \r\n\r\n`
  );
}

/** What a rehearsal did: the address it banned, whether that ban reached the (kept) nft script, and how long it took. */
export interface Rehearsal {
  readonly address: IpAddress;
  readonly banned: boolean;
  readonly ms: number;
}

/**
 * Runs one ban through the daemon's code on throwaway parts, for each way the firewall may write it (a netlink batch on
 * a kernel that replaces timeouts, an nft script on an older one: which one this kernel takes is probed later, at
 * init) and each way a ban is decided: failures one at a time, the last banned early on the store's brink (a
 * password guesser waiting for each answer), and all in one read, banned on the store's verdict (a burst). A policy
 * that would ban none of the rehearsal's addresses (an ignore list holding them all, a maxretry past MAX_FAILURES)
 * still warms what it reaches.
 */
export async function rehearseBan(policy: Policy, table: string): Promise<Rehearsal> {
  const started = performance.now();
  const address = REHEARSAL_ADDRESSES.find((a) => policy.refusal(a) === null) ?? REHEARSAL_ADDRESSES[0]!;
  let banned = true;
  for (const timeoutUpdate of [true, false]) {
    for (const stepwise of [true, false]) banned = (await rehearseOnce(policy, table, address, timeoutUpdate, stepwise)) && banned;
  }
  return { address, banned, ms: performance.now() - started };
}

/** One rehearsal; whether its ban reached what the firewall would have written. */
async function rehearseOnce(
  policy: Policy,
  table: string,
  address: IpAddress,
  timeoutUpdate: boolean,
  stepwise: boolean,
): Promise<boolean> {
  const scripts: string[] = [];
  const batches: Buffer[] = [];
  const runner: NftRunner = {
    apply: (script) => {
      scripts.push(script);
      return Promise.resolve();
    },
    applyBatch: (batch) => {
      batches.push(batch);
      return Promise.resolve();
    },
    list: () => Promise.resolve(''),
    close: () => Promise.resolve(),
  };
  const logger = createLogger('silent');
  const store = new MemoryStore({ nodeId: 'rehearsal', policy: policy.params });
  const daemon = new Daemon({
    policy,
    store,
    firewall: new NftFirewall({ table, runner, logger, timeoutUpdate }),
    source: { start: () => undefined, stop: () => Promise.resolve() },
    logger,
    metrics: new Metrics(),
    maxPending: MAX_FAILURES,
    injectionBantimeMs: 60_000,
  });
  try {
    const intake = new Intake((batch) => daemon.onBatch(batch));
    const reader = new AmiFrameReader((frame) => intake.frame(frame, Date.now()));
    const now = Date.now();
    const failures = Math.min(policy.params.maxretry, MAX_FAILURES);
    for (let i = 0; i < failures; i++) {
      reader.push(Buffer.from(challengeResponseFailed(address, i, new Date(now + i)), 'latin1'));
      if (!stepwise) continue;
      intake.flush();
      await daemon.idle();
    }
    intake.flush();
    await daemon.idle();
  } finally {
    await daemon.stop();
  }
  const key = Buffer.alloc(4);
  key.writeUInt32BE(address.words[0]!);
  return timeoutUpdate ? batches.some((b) => b.includes(key)) : scripts.some((s) => s.includes(address.text));
}
