// The persistent nft writer against the real kernel, inside throwaway network namespaces: a writer killed with a
// batch in hand loses nothing, a refused batch is reported as refused, the child sees none of our environment, its
// memory stays flat, and nothing outside our table changes.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { getPriority, release, setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { parseTarget, type IpTarget } from '../../src/net/ip.js';
import { createLogger } from '../../src/log.js';
import type { FirewallBan } from '../../src/firewall/firewall.js';
import { NftFirewall } from '../../src/firewall/nft.js';
import { NftError } from '../../src/firewall/nft-runner.js';
import { NftWriter, type NftWriterOptions } from '../../src/firewall/nft-writer.js';
import { createNetns, waitFor, type Netns } from '../support/netns.js';

const t = (text: string): IpTarget => parseTarget(text)!;
const ban = (text: string, timeoutMs = 3_600_000): FirewallBan => ({ target: t(text), timeoutMs });
/** 100.64.0.0/10: none of it loopback, multicast or otherwise unbannable */
const host = (i: number): string => `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;

interface Bed {
  ns: Netns;
  writer: NftWriter;
  fw: NftFirewall;
  logs: Array<Record<string, unknown>>;
  restarts: () => number;
}

async function setup(tc: TestContext, options: Partial<NftWriterOptions> = {}): Promise<Bed> {
  const ns = await createNetns((fn) => tc.after(fn));
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  let restarts = 0;
  const writer = new NftWriter({ netns: ns.name, logger: createLogger('info', sink), onRestart: () => restarts++, ...options });
  const fw = new NftFirewall({ runner: writer });
  tc.after(() => fw.shutdown());
  return { ns, writer, fw, logs, restarts: () => restarts };
}

/** someone else's table, as an operator's firewall would have it */
const OPERATOR_TABLE = `table inet operator {
  set allow { type ipv4_addr; elements = { 192.0.2.1, 192.0.2.2 } }
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr @allow counter accept
    tcp dport 22 accept
  }
}
table ip legacy { chain c { counter; }; }
`;

async function elements(ns: Netns): Promise<Set<string>> {
  return new Set((await new NftFirewall({ netns: ns.name }).list()).map((e) => e.address));
}

test('a writer killed with a batch in hand (SIGKILL) is restarted and the batch applied: no ban lost', async (tc) => {
  const { ns, writer, fw, logs, restarts } = await setup(tc);
  await ns.nft(OPERATOR_TABLE);
  const snapshot = () =>
    ns
      .execOk('nft', ['list', 'ruleset', 'inet'])
      .then((r) => r.replace(/table inet ami_guard \{[\s\S]*/, ''))
      .then(async (r) => r + (await ns.execOk('nft', ['list', 'table', 'ip', 'legacy'])));
  await fw.init();
  const before = await snapshot();
  await fw.add([ban('198.51.100.1')]);

  // 1. stopped before it could read the batch, then killed: the batch was certainly unanswered
  const first = writer.pid!;
  process.kill(first, 'SIGSTOP');
  const stopped = fw.add([ban('198.51.100.2'), ban('2001:db8::2'), ban('203.0.113.0/24')]);
  await new Promise((r) => setImmediate(r));
  process.kill(first, 'SIGKILL');
  await stopped;
  assert.notEqual(writer.pid, first, 'a new child runs');
  assert.equal(restarts(), 1);
  const died = logs.find((l) => l['msg'] === 'nft writer died with a batch unanswered; restarting it and sending the batch again');
  assert.ok(died, JSON.stringify(logs));
  assert.equal(died['err'], 'killed by SIGKILL');
  assert.ok(logs.some((l) => l['msg'] === 'nft writer restarted'));

  // 2. killed while it works through 100k elements (nft parses them for ~0.5 s): whether the kernel had committed
  // the transaction or not, the batch is there once the promise resolves, once
  const second = writer.pid!;
  const big = Array.from({ length: 100_000 }, (_, i) => ban(host(i)));
  let settled = false;
  const idle = await cpuTicks(second);
  const loading = fw.add(big).finally(() => (settled = true));
  // 50 ms of CPU into the batch (its 100k elements take it several times that)
  await waitFor('the writer busy with the batch', async () => ((await cpuTicks(second)) >= idle + 5 ? true : undefined), 10_000);
  const inFlight = !settled;
  process.kill(second, 'SIGKILL');
  await loading;
  tc.diagnostic(`second kill landed ${inFlight ? 'with the batch in flight' : 'after the batch was answered'}`);
  assert.equal(restarts(), inFlight ? 2 : 1);

  const els = await elements(ns);
  for (const a of ['198.51.100.1', '198.51.100.2', '2001:db8::2', '203.0.113.0/24', host(0), host(99_999)]) {
    assert.ok(els.has(a), `${a} in the kernel`);
  }
  assert.equal(els.size, 4 + 100_000);
  assert.equal(await snapshot(), before, 'nothing outside our table changed');
});

test('a writer killed between batches is replaced by the next batch, which lands', async (tc) => {
  const { ns, writer, fw, logs, restarts } = await setup(tc);
  await fw.init();
  const first = writer.pid!;
  const gone = new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      try {
        process.kill(first, 0);
      } catch {
        clearInterval(poll);
        resolve();
      }
    }, 10);
  });
  process.kill(first, 'SIGKILL');
  await gone;
  await fw.add([ban('198.51.100.20')]);
  assert.ok((await elements(ns)).has('198.51.100.20'));
  assert.notEqual(writer.pid, first);
  assert.equal(restarts(), 1);
  // said when the next batch finds it gone (or, had that batch been written before its end was noticed, as a death
  // with that batch in hand, which is then sent again)
  const said = logs.find((l) => /^nft writer (had exited; starting a new one|died with a batch unanswered)/.test(String(l['msg'])));
  assert.ok(said, JSON.stringify(logs));
  assert.equal(said['err'], 'killed by SIGKILL');
});

test('a batch nft refuses is reported as refused; the writer goes on with the next one', async (tc) => {
  const { ns, writer, fw, restarts } = await setup(tc);
  await fw.init();
  const pid = writer.pid;
  await assert.rejects(
    writer.apply('add element inet ami_guard no_such_set { 192.0.2.7 }\n'),
    (e: unknown) =>
      e instanceof NftError && e.kind === 'script' && /No such file or directory/.test(e.message) && /no_such_set/.test(e.stderr),
  );
  await assert.rejects(
    writer.apply('add element inet ami_guard banned_v4 { 192.0.2.8 timeout 60s }\nthis is not nft\n'),
    (e: unknown) => e instanceof NftError && e.kind === 'script' && /syntax error/.test(e.message),
  );
  // the refused script was one transaction: its valid first line did not land either
  assert.equal((await elements(ns)).has('192.0.2.8'), false);
  await fw.add([ban('192.0.2.9')]);
  assert.ok((await elements(ns)).has('192.0.2.9'));
  assert.equal(writer.pid, pid, 'the same child');
  assert.equal(restarts(), 0);
});

test('the writer child gets PATH and LC_ALL only: none of our environment, no secrets', async (tc) => {
  process.env['AMI_GUARD_AMI_SECRET'] = 'do-not-leak-this';
  tc.after(() => {
    delete process.env['AMI_GUARD_AMI_SECRET'];
  });
  const { writer, fw } = await setup(tc);
  await fw.init();
  const environ = (await readFile(`/proc/${writer.pid!}/environ`, 'utf8')).split('\0').filter(Boolean);
  assert.deepEqual(environ.map((v) => v.slice(0, v.indexOf('='))).sort(), ['LC_ALL', 'PATH']);
  assert.ok(environ.includes('LC_ALL=C'));
  const cmdline = (await readFile(`/proc/${writer.pid!}/cmdline`, 'utf8')).split('\0');
  assert.equal(cmdline[0], '/usr/bin/python3');
});

test('the writer asks for a short scheduler slice and keeps the nice value it was started with', async (tc) => {
  // started from a process at nice 3, as an operator's Nice= would start the daemon (this file runs in its own process)
  const nice = getPriority();
  setPriority(3);
  tc.after(() => setPriority(nice));
  const { ns, writer, fw } = await setup(tc);
  await fw.init();
  setPriority(nice);
  const pid = writer.pid!;
  assert.equal(getPriority(pid), 3, 'the nice value it inherited');
  const sched = await readFile(`/proc/${pid}/sched`, 'utf8');
  const slice = /^se\.slice\s+:\s+(\d+)/m.exec(sched)?.[1];
  const [major, minor] = release().split('.').map(Number) as [number, number];
  if (major > 6 || (major === 6 && minor >= 12)) {
    // EEVDF with slices a task may ask for (Linux 6.12): 0.1 ms
    assert.equal(slice, '100000', `/proc/${pid}/sched:\n${sched.slice(0, 600)}`);
  } else {
    // an older kernel takes the request and ignores it: the writer runs as ever
    await fw.add([ban('192.0.2.7')]);
    assert.ok((await elements(ns)).has('192.0.2.7'));
  }
});
test("the writer child's memory does not grow with use", async (tc) => {
  const { writer, fw } = await setup(tc);
  await fw.init();
  const burst = async (from: number, n: number): Promise<void> => {
    for (let i = from; i < from + n; i++) await fw.add([ban(host(i), 60_000)]);
  };
  await burst(0, 2_000);
  const early = await rssKb(writer.pid!);
  await burst(2_000, 18_000);
  // a large batch and a listing make the helper drop its context: back where it was
  await fw.reconcile(Array.from({ length: 50_000 }, (_, i) => ban(host(100_000 + i))));
  await fw.list();
  await burst(20_000, 2_000);
  const late = await rssKb(writer.pid!);
  tc.diagnostic(`writer RSS after 2,000 adds ${early} kB; after 22,000 adds, a 50k reconciliation and a listing ${late} kB`);
  assert.ok(late - early < 4_096, `grew from ${early} to ${late} kB`);
});

test('a request the writer does not answer kills it; the next request gets a new one', async (tc) => {
  const { writer, fw, restarts } = await setup(tc, { timeoutMs: 500 });
  await fw.init();
  const pid = writer.pid!;
  process.kill(pid, 'SIGSTOP');
  await assert.rejects(
    writer.apply('add element inet ami_guard banned_v4 { 192.0.2.1 timeout 60s }\n'),
    (e: unknown) => e instanceof NftError && e.kind === 'timeout',
  );
  await fw.add([ban('192.0.2.2')]);
  assert.notEqual(writer.pid, pid);
  assert.equal(restarts(), 1);
});

test('a child that dies on every try of a batch fails it as a crash after 3 tries, and waits longer each time', async (tc) => {
  const dir = await mkdtemp(join(tmpdir(), 'agtest-'));
  tc.after(() => rm(dir, { recursive: true, force: true }));
  const python = join(dir, 'python3');
  // answers `ready`, then dies on the first request, as a helper crashing in libnftables would
  await writeFile(python, "#!/bin/sh\nprintf 'ready\\n'\nread -r line\nexit 1\n");
  await chmod(python, 0o755);
  const { writer, restarts, logs } = await setup(tc, { python });
  await assert.rejects(
    writer.apply('add table inet x\n'),
    (e: unknown) => e instanceof NftError && e.kind === 'crash' && /died 3 times/.test(e.message),
  );
  assert.equal(restarts(), 2);
  assert.deepEqual(
    logs.filter((l) => l['msg'] === 'nft writer restarted').map((l) => l['afterMs']),
    [100, 200],
  );
});

test('no python3, or no CAP_NET_ADMIN: clear errors naming what to do', async (tc) => {
  const missing = await setup(tc, { python: '/nonexistent/python3' });
  await assert.rejects(
    missing.fw.init(),
    /python3 not found at \/nonexistent\/python3: the nft writer needs it \(apt-get install -y python3\), or set nft.writer to spawn/,
  );
  assert.equal(missing.restarts(), 0);

  const dir = await mkdtemp(join(tmpdir(), 'agtest-'));
  tc.after(() => rm(dir, { recursive: true, force: true }));
  const unprivileged = join(dir, 'python-as-nobody');
  await writeFile(unprivileged, '#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 "$@"\n');
  await chmod(unprivileged, 0o755);
  const nobody = await setup(tc, { python: unprivileged });
  await assert.rejects(nobody.fw.init(), /nft needs CAP_NET_ADMIN/);
  assert.equal((await nobody.ns.execOk('nft', ['list', 'ruleset'])).trim(), '');
});

/** user + system CPU ticks a process has used */
async function cpuTicks(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
}

async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
}
