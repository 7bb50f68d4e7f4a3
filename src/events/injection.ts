// Turns the frames that show an injection into Injection reports naming the genuine source, across frame
// boundaries. An injected empty line splits one event of Asterisk's into several frames: the head (cut short, or
// with forged lines) and one or more fragments, the last of which holds the genuine SessionID, LocalAddress,
// RemoteAddress lines Asterisk wrote after the attacker's text. Every frame from the head up to the next genuine
// message belongs to that event; the attacker's text always comes before Asterisk's own address lines (after them
// for RequestBadFormat, see schema.genuineRun), so the last such run of lines in the episode is the genuine one.
//
// An episode closes at the next message that is Asterisk's own (a well-formed event, or the reply to an action of
// ours, whose random ActionID the attacker cannot know), at a reconnect, or at the end of a recording. `open` says
// when one is waiting, so the AMI client can send a Ping to close it promptly on a quiet link.
import type { IpAddress } from '../net/ip.js';
import type { AddressRuns } from './normalise.js';
import { genuineRun } from './schema.js';
import type { Injection, InjectionSign } from './types.js';

interface Episode {
  readonly kind: string;
  readonly account: string;
  readonly sign: InjectionSign;
  readonly startedAt: number;
  first: IpAddress | null;
  last: IpAddress | null;
}

export class InjectionTracker {
  private episode: Episode | null = null;
  /** the genuine address of the last well-formed security event, while nothing else has come since */
  private previous: IpAddress | null = null;

  constructor(private readonly report: (injection: Injection) => void) {}

  /** whether an episode waits for the next genuine message to close it */
  get open(): boolean {
    return this.episode !== null;
  }

  /** A well-formed security event: closes any episode, and may own a fragment that follows it. */
  event(address: IpAddress): void {
    this.close();
    this.previous = address;
  }

  /** Any other genuine message (a system event, the reply to our action): closes any episode. */
  boundary(): void {
    this.close();
    this.previous = null;
  }

  /** A security event with lines Asterisk did not write: starts an episode. */
  broken(kind: string, account: string, sign: InjectionSign, runs: AddressRuns, at: number): void {
    this.close();
    this.previous = null;
    this.episode = { kind, account, sign, startedAt: at, first: runs.first, last: runs.last };
  }

  /** Lines that are no message of their own. */
  fragment(runs: AddressRuns, at: number): void {
    const e = this.episode;
    if (e) {
      e.first ??= runs.first;
      if (runs.last) e.last = runs.last;
      return;
    }
    // No episode: the rest of the message before it. A run of address lines here is the genuine one (its head was
    // forged well enough to pass); otherwise an injection in a trailing value of the last event split it.
    const source = runs.last ?? this.previous;
    this.previous = null;
    this.report({ source, kind: '', account: '', sign: 'fragment', receivedAt: at });
  }

  /** Ends the episode now (reconnect, end of a recording). */
  close(): void {
    const e = this.episode;
    if (!e) return;
    this.episode = null;
    const source = genuineRun(e.kind) === 'first' ? (e.first ?? e.last) : (e.last ?? e.first);
    this.report({ source, kind: e.kind, account: e.account, sign: e.sign, receivedAt: e.startedAt });
  }
}
