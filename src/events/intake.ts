// The events layer's entry: frames from the AMI client (or a recording) in, batches of security events and
// injection reports out, one batch per read of the socket. The live daemon, `replay` and `record` all read through
// here, so what the daemon counts and what a dry run shows cannot drift apart.
import type { FrameView } from '../ami/frame-reader.js';
import { InjectionTracker } from './injection.js';
import { readFrame, type InvalidReason } from './normalise.js';
import type { Injection, SecurityEvent } from './types.js';

/** What one read of the stream held. The arrays belong to the receiver. */
export interface IntakeBatch {
  readonly events: SecurityEvent[];
  readonly injections: Injection[];
}

export interface IntakeCounters {
  /** well-formed security events */
  events: number;
  /** well-formed events of other classes (FullyBooted, Shutdown, …) */
  system: number;
  /** security events whose structure was right but a value was unusable, by reason */
  readonly invalid: Record<InvalidReason, number>;
  /** frames that were part of an injection (heads and fragments) */
  injectedFrames: number;
}

/** What the AMI client hands frames to. */
export interface FrameSink {
  /** a message read (not a reply to an action of ours); valid only during the call */
  frame(f: FrameView, receivedAt: number): void;
  /** a reply to an action of ours arrived: the stream is Asterisk's own again */
  boundary(): void;
  /** the end of one read */
  flush(): void;
  /** the connection ended or began: what was open belonged to it */
  reset(): void;
  /** an injection's head was seen and its end is not yet known: a Ping would close it now */
  readonly awaitingBoundary: boolean;
}

export class Intake implements FrameSink {
  readonly counters: IntakeCounters = {
    events: 0,
    system: 0,
    invalid: { 'bad-kind': 0, 'bad-address': 0, 'bad-value': 0 },
    injectedFrames: 0,
  };
  private events: SecurityEvent[] = [];
  private injections: Injection[] = [];
  private readonly tracker = new InjectionTracker((i) => this.injections.push(i));

  constructor(private readonly onBatch: (batch: IntakeBatch) => void) {}

  get awaitingBoundary(): boolean {
    return this.tracker.open;
  }

  frame(f: FrameView, receivedAt: number): void {
    const r = readFrame(f, receivedAt);
    switch (r.type) {
      case 'event':
        this.counters.events++;
        this.tracker.event(r.event.address);
        this.events.push(r.event);
        return;
      case 'system':
        this.counters.system++;
        this.tracker.boundary();
        return;
      case 'banner':
        this.tracker.boundary();
        return;
      case 'broken':
        this.counters.injectedFrames++;
        // Event and Privilege lines the attacker wrote start no event of their own: the rest of the one before
        if (r.head) this.tracker.broken(r.kind, r.account, r.sign, r.runs, receivedAt);
        else this.tracker.fragment(r.runs, receivedAt);
        return;
      case 'response': // not a reply to us (the client keeps those): forged, so part of an injection
      case 'fragment':
        this.counters.injectedFrames++;
        this.tracker.fragment(r.runs, receivedAt);
        return;
      case 'invalid':
        this.counters.invalid[r.reason]++;
        this.tracker.boundary();
        return;
    }
  }

  boundary(): void {
    this.tracker.boundary();
  }

  flush(): void {
    if (this.events.length === 0 && this.injections.length === 0) return;
    const batch = { events: this.events, injections: this.injections };
    this.events = [];
    this.injections = [];
    this.onBatch(batch);
  }

  reset(): void {
    this.tracker.close();
    this.tracker.boundary();
    this.flush();
  }
}
