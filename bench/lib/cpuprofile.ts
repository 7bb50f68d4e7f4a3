// Reads a V8 .cpuprofile (node --cpu-prof) and says where the time went: by owner (which package or part of our
// code a sample belongs to) and by function (self time).
//
// Owner attribution: a frame with a URL of its own belongs to that URL's package; node's internals and V8 builtins
// (no URL) belong to the nearest ancestor frame that is ours or a package's, so String.split called from
// asterisk-manager's reader counts for asterisk-manager. Stacks with nothing but node internals (socket reads, timers)
// stay 'node core'.
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  /** profile length, ms */
  readonly wallMs: number;
  /** sampled time not idle, ms */
  readonly busyMs: number;
  /** owner → % of busy time */
  readonly byOwner: Array<{ owner: string; ms: number; pct: number }>;
  /** top functions by self time, % of busy time */
  readonly topFunctions: Array<{ fn: string; where: string; owner: string; ms: number; pct: number }>;
}

const SPECIAL = new Set(['(garbage collector)', '(program)', '(idle)', '(root)']);

const PACKAGE_GROUPS: Array<[RegExp, string]> = [
  [/node_modules\/asterisk-manager\//, 'asterisk-manager (AMI parser)'],
  [/node_modules\/(ioredis|@ioredis|redis-parser|redis-errors|denque|cluster-key-slot|standard-as-callback)\//, 'ioredis'],
  [
    /node_modules\/(pino|pino-std-serializers|sonic-boom|thread-stream|fast-redact|quick-format-unescaped|on-exit-leak-free|atomic-sleep|safe-stable-stringify|@pinojs)/,
    'pino (logging)',
  ],
  [/node_modules\/(prom-client|tdigest|bintrees)\//, 'prom-client (metrics)'],
  [/node_modules\/ipaddr\.js\//, 'ipaddr.js'],
  [/node_modules\/(convict|commander|yaml)\//, 'config/CLI libraries'],
];

function ownerOfUrl(url: string): string | null {
  if (!url) return null;
  for (const [re, name] of PACKAGE_GROUPS) if (re.test(url)) return name;
  const ours = /\/dist\/src\/([^/]+)\//.exec(url) ?? /\/dist\/src\/([^/]+)\.js$/.exec(url);
  if (ours) return `ami-guard src/${ours[1]!.replace(/\.js$/, '')}`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return `npm: ${pkg[1]}`;
  if (url.startsWith('node:')) return 'node core';
  return null;
}

function shortUrl(url: string, line: number): string {
  if (!url) return '(native)';
  const m = /node_modules\/(.*)$/.exec(url) ?? /\/dist\/(.*)$/.exec(url);
  return `${m ? m[1] : url.replace(/^file:\/\//, '')}:${line + 1}`;
}

export function analyseProfile(file: string, top = 20): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  // owner of every node: its own URL's owner, else the nearest ancestor's that is not node core
  const owner = new Map<number, string>();
  const resolve = (id: number): string => {
    const cached = owner.get(id);
    if (cached) return cached;
    const n = byId.get(id)!;
    const name = n.callFrame.functionName;
    let o: string;
    if (name === '(garbage collector)') o = 'GC';
    else if (name === '(idle)') o = 'idle';
    else if (name === '(program)') o = 'V8/native (program)';
    else {
      const own = ownerOfUrl(n.callFrame.url);
      const up = parent.get(id);
      const inherited = up === undefined ? null : resolve(up);
      const inheritedUseful =
        inherited && inherited !== 'node core' && !inherited.startsWith('(') && inherited !== 'root' ? inherited : null;
      if (own && own !== 'node core') o = own;
      else o = inheritedUseful ?? own ?? 'node core';
    }
    owner.set(id, o);
    return o;
  };

  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000; // µs → ms; the delta after a sample is the time it stood for
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  let busy = 0;
  const owners = new Map<string, number>();
  const fns = new Map<string, { fn: string; where: string; owner: string; ms: number }>();
  for (const [id, ms] of self) {
    const o = resolve(id);
    if (o === 'idle') continue;
    busy += ms;
    owners.set(o, (owners.get(o) ?? 0) + ms);
    const n = byId.get(id)!;
    const name = n.callFrame.functionName || '(anonymous)';
    const where = SPECIAL.has(name) ? '' : shortUrl(n.callFrame.url, n.callFrame.lineNumber);
    const key = `${name}@${where}`;
    const e = fns.get(key) ?? { fn: name, where, owner: o, ms: 0 };
    e.ms += ms;
    fns.set(key, e);
  }
  const pct = (ms: number): number => Math.round((ms / busy) * 1000) / 10;
  return {
    wallMs: Math.round((p.endTime - p.startTime) / 1000),
    busyMs: Math.round(busy),
    byOwner: [...owners].sort((a, b) => b[1] - a[1]).map(([o, ms]) => ({ owner: o, ms: Math.round(ms), pct: pct(ms) })),
    topFunctions: [...fns.values()]
      .sort((a, b) => b.ms - a.ms)
      .slice(0, top)
      .map((f) => ({ ...f, ms: Math.round(f.ms), pct: pct(f.ms) })),
  };
}
