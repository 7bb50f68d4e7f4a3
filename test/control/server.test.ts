// The control socket with real Unix sockets: permissions, hostile requests, bounds, a stale or foreign path, and the
// client's view of a daemon that is absent or out of reach. The verbs behind it are the daemon's (test/e2e/control).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlServer, type ControlHandler } from '../../src/control/server.js';
import { ControlError, connectControl, request } from '../../src/control/client.js';
import {
  MAX_REQUEST_BYTES,
  MAX_TARGETS,
  PAGE_SIZE,
  RequestError,
  encodeRequest,
  parseRequest,
  type ControlRequest,
} from '../../src/control/protocol.js';
import { parseTarget } from '../../src/net/ip.js';
import { createLogger } from '../../src/log.js';
import { Writable } from 'node:stream';

interface Served {
  readonly path: string;
  readonly server: ControlServer;
  readonly seen: ControlRequest[];
  readonly logs: string[];
}

/** A server whose handler records what reached it; the listing streams `pages` pages. */
async function serve(
  t: TestContext,
  o: { pages?: number; maxConnections?: number; requestTimeoutMs?: number; path?: string } = {},
): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), 'ag-ctl-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = o.path ?? join(dir, 'run', 'control.sock');
  const seen: ControlRequest[] = [];
  const logs: string[] = [];
  const sink = new Writable({
    write: (chunk: Buffer, _e, cb) => {
      logs.push(chunk.toString());
      cb();
    },
  });
  const handler: ControlHandler = {
    async handle(req, out) {
      seen.push(req);
      if (req.verb === 'list') {
        for (let i = 0; i < (o.pages ?? 1); i++)
          await out.page(Array.from({ length: PAGE_SIZE }, (_, j) => ({ address: `10.0.${i}.${j % 250}`, until: 1 })));
        return { source: 'store' };
      }
      if (req.verb === 'ban') throw new RequestError(`refusing to ban ${req.targets[0]!.text}: test`);
      if (req.verb === 'unban') throw new Error('the store failed');
      return { verb: req.verb };
    },
  };
  const server = new ControlServer({
    path,
    handler,
    logger: createLogger('info', sink),
    ...(o.maxConnections ? { maxConnections: o.maxConnections } : {}),
    ...(o.requestTimeoutMs ? { requestTimeoutMs: o.requestTimeoutMs } : {}),
  });
  await server.listen();
  t.after(() => server.close());
  return { path, server, seen, logs };
}

/** Sends raw bytes and returns everything the server wrote back before closing. */
function raw(path: string, bytes: string | Buffer, o: { end?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let out = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (out += d));
    sock.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    sock.on('close', () => resolve(out));
    sock.on('connect', () => {
      sock.write(bytes);
      if (o.end) sock.end();
    });
  });
}

function answer(text: string): { ok: boolean; error?: string; usage?: boolean; result?: unknown } {
  const lines = text.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as { ok: boolean; error?: string; usage?: boolean; result?: unknown };
}

test('the socket is created mode 0600 in a directory created 0700, and removed on close', async (t) => {
  const s = await serve(t);
  assert.equal(statSync(s.path).mode & 0o777, 0o600);
  assert.equal(statSync(join(s.path, '..')).mode & 0o777, 0o700);
  assert.ok(statSync(s.path).isSocket());
  await s.server.close();
  assert.throws(() => statSync(s.path), /ENOENT/);
});

test('another user cannot connect, even where the directory lets everyone through', async (t) => {
  const s = await serve(t);
  chmodSync(join(s.path, '..'), 0o755);
  chmodSync(join(s.path, '../..'), 0o755);
  assert.equal(process.getuid?.(), 0, 'this test needs root to drop privileges in a child: run as root');
  const script = `
    import { connectControl } from '${process.cwd()}/dist/src/control/client.js';
    connectControl(${JSON.stringify(s.path)}).then((sock) => { console.log(sock ? 'connected' : 'absent'); sock?.destroy(); }, (err) => console.log(err.message));`;
  const r = spawnSync(
    'setpriv',
    ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', script],
    { encoding: 'utf8', timeout: 20_000 },
  );
  assert.equal(r.error, undefined, 'setpriv not found: apt-get install -y util-linux');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), `permission denied on the daemon's control socket ${s.path}: run ami-guard as root`);
  assert.equal(s.seen.length, 0);
});

test('hostile requests are refused with a reason and never reach the handler', async (t) => {
  const s = await serve(t);
  const cases: Array<[string | Buffer, RegExp]> = [
    ['garbage\n', /^the request is not JSON$/],
    ['[1,2]\n', /must be a JSON object/],
    ['{"v":2,"verb":"list"}\n', /unsupported protocol version/],
    ['{"v":1,"verb":"flush"}\n', /^unknown verb: one of status, list, show, ban, unban$/],
    ['{"v":1,"verb":"list","extra":1}\n', /^unknown field "extra" for list$/],
    ['{"v":1,"verb":"show","target":"10.0.0.300"}\n', /^invalid address or CIDR network: "10\.0\.0\.300"$/],
    ['{"v":1,"verb":"show","target":{"toString":1}}\n', /^invalid address or CIDR network: "object"$/],
    ['{"v":1,"verb":"unban","targets":[]}\n', /targets must be a list of 1 to 1000/],
    [
      `{"v":1,"verb":"unban","targets":${JSON.stringify(Array(MAX_TARGETS + 1).fill('10.0.0.1'))}}\n`,
      /targets must be a list of 1 to 1000/,
    ],
    ['{"v":1,"verb":"ban","targets":["10.0.0.1"],"durationMs":-5}\n', /durationMs must be whole milliseconds/],
    ['{"v":1,"verb":"ban","targets":["10.0.0.1"],"durationMs":1e300}\n', /durationMs must be whole milliseconds/],
    ['{"v":1,"verb":"ban","targets":["10.0.0.1"],"note":["x"]}\n', /note must be text/],
    ['{"v":1,"verb":"__proto__"}\n', /unknown verb/],
    [Buffer.from([0xff, 0xfe, 0x00, 0x0a]), /not JSON/],
  ];
  for (const [bytes, re] of cases) {
    const a = answer(await raw(s.path, bytes));
    assert.equal(a.ok, false, String(bytes).slice(0, 80));
    assert.match(a.error!, re);
    assert.equal(a.usage, true);
  }
  assert.equal(s.seen.length, 0, 'nothing reached the handler');
  // and the server still serves
  assert.deepEqual(answer(await raw(s.path, '{"v":1,"verb":"status"}\n')), { ok: true, result: { verb: 'status' } });
});

test('a request line over the bound is refused at the bound, before it reaches the parser', async (t) => {
  const s = await serve(t);
  const huge = Buffer.alloc(4 * MAX_REQUEST_BYTES, 0x61);
  const a = answer(await raw(s.path, huge));
  assert.equal(a.ok, false);
  assert.equal(a.error, `request longer than ${MAX_REQUEST_BYTES} bytes`);
  const noNewline = answer(await raw(s.path, Buffer.alloc(MAX_REQUEST_BYTES + 1, 0x61)));
  assert.equal(noNewline.error, `request longer than ${MAX_REQUEST_BYTES} bytes`);
  assert.equal(s.seen.length, 0);
});

test('a client that sends no whole line is answered and closed after the request timeout', async (t) => {
  const s = await serve(t, { requestTimeoutMs: 300 });
  const a = answer(await raw(s.path, '{"v":1,'));
  assert.equal(a.error, 'no request line within 0.3 s');
  // one that sends half a line and hangs up is simply gone
  assert.equal(await raw(s.path, '{"v":1,', { end: true }), '');
});

test('beyond maxConnections a connection is told the daemon is busy', async (t) => {
  const s = await serve(t, { maxConnections: 2, requestTimeoutMs: 5_000 });
  const idle = [createConnection(s.path), createConnection(s.path)];
  t.after(() => idle.forEach((c) => c.destroy()));
  await Promise.all(idle.map((c) => new Promise((r) => c.once('connect', r))));
  await new Promise((r) => setTimeout(r, 50));
  const a = answer(await raw(s.path, '{"v":1,"verb":"status"}\n'));
  assert.equal(a.ok, false);
  assert.match(a.error!, /^busy: too many control connections/);
  idle.forEach((c) => c.destroy());
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(answer(await raw(s.path, '{"v":1,"verb":"status"}\n')).ok, true);
});

test('the client: pages in order, the answer, refusals with their kind, a failure without one', async (t) => {
  const s = await serve(t, { pages: 5 });
  const pages: number[] = [];
  const sock = (await connectControl(s.path))!;
  const result = await request(
    sock,
    { verb: 'list' },
    {
      onPage: async (items) => {
        await new Promise((r) => setTimeout(r, 5)); // a slow terminal: the socket waits
        pages.push(items.length);
      },
    },
  );
  assert.deepEqual(result, { source: 'store' });
  assert.deepEqual(pages, [PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, PAGE_SIZE]);

  await assert.rejects(
    request((await connectControl(s.path))!, {
      verb: 'ban',
      targets: [parseTarget('10.0.0.1')!],
      durationMs: null,
      note: '',
      user: 'alice',
    }),
    (err: unknown) => {
      assert.ok(err instanceof ControlError);
      assert.equal(err.message, 'refusing to ban 10.0.0.1: test');
      assert.equal(err.usage, true);
      return true;
    },
  );
  await assert.rejects(
    request((await connectControl(s.path))!, { verb: 'unban', targets: [parseTarget('10.0.0.1')!], user: '' }),
    (err: unknown) => {
      assert.equal((err as ControlError).usage, false);
      assert.equal((err as Error).message, 'the store failed');
      return true;
    },
  );
  assert.ok(
    s.logs.some((l) => l.includes('control request failed')),
    'a failed verb is logged',
  );
});

test('a client that goes away in the middle of a long listing stops the listing', async (t) => {
  const s = await serve(t, { pages: 400 });
  const sock = createConnection(s.path);
  await new Promise((r) => sock.once('connect', r));
  sock.write(encodeRequest({ verb: 'list' }));
  await new Promise((r) => sock.once('data', r));
  sock.destroy();
  // the handler's writes resolve once the client is gone; the server goes on serving
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(answer(await raw(s.path, '{"v":1,"verb":"status"}\n')).ok, true);
});

test('connectControl: no socket or a dead one is "no daemon here"; a stale socket is replaced, a live one or a file is not taken', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ag-ctl-stale-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.equal(await connectControl(join(dir, 'absent.sock')), null);

  // a socket file whose server is gone: a daemon killed with SIGKILL leaves one
  const stalePath = join(dir, 'stale.sock');
  const child = spawnSync(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(stalePath)}, () => process.kill(process.pid, 'SIGKILL'))`,
  ]);
  assert.equal(child.signal, 'SIGKILL');
  assert.ok(statSync(stalePath).isSocket(), 'the killed listener left its socket');
  assert.equal(await connectControl(stalePath), null, 'nobody answers on it');
  const s = await serve(t, { path: stalePath });
  assert.equal(answer(await raw(s.path, '{"v":1,"verb":"status"}\n')).ok, true, 'the stale socket was replaced');

  const second = new ControlServer({ path: stalePath, handler: { handle: async () => null }, logger: createLogger('silent') });
  await assert.rejects(second.listen(), /another ami-guard daemon is listening there/);
  const plain = join(dir, 'plain');
  writeFileSync(plain, 'not a socket');
  const third = new ControlServer({ path: plain, handler: { handle: async () => null }, logger: createLogger('silent') });
  await assert.rejects(third.listen(), /the path exists and is not a socket/);
});

test('parseRequest builds parsed targets and inert notes', () => {
  const r = parseRequest(
    '{"v":1,"verb":"ban","targets":["::ffff:198.51.100.7","2001:DB8::/32"],"durationMs":60000,"note":"a\\u001b[31mb\\u202ec"}',
  );
  assert.equal(r.verb, 'ban');
  if (r.verb !== 'ban') return;
  assert.deepEqual(
    r.targets.map((x) => x.text),
    ['198.51.100.7', '2001:db8::/32'],
  );
  assert.equal(r.durationMs, 60_000);
  assert.equal(r.note, 'a [31mb c');
  assert.equal(r.user, '', 'no user said: none logged');
  // the user the CLI names for the audit log is outside input too: made inert, bounded
  const u = parseRequest('{"v":1,"verb":"unban","targets":["10.1.2.3"],"user":"eve\\u001b[2Jx"}');
  assert.equal(u.verb === 'unban' && u.user, 'eve [2Jx');
  assert.throws(() => parseRequest(`{"v":1,"verb":"unban","targets":["10.1.2.3"],"user":"${'x'.repeat(65)}"}`), /user must be text/);
  assert.throws(() => parseRequest('{"v":1,"verb":"ban","targets":["10.1.2.3"],"user":7}'), /user must be text/);
  assert.equal(encodeRequest({ verb: 'show', target: parseTarget('10.1.2.3')! }), '{"v":1,"verb":"show","target":"10.1.2.3"}\n');
});

test("root reaches the socket of a daemon that runs as another user (the unit's DynamicUser)", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ag-ctl-dyn-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const runtime = join(dir, 'ami-guard');
  const path = join(runtime, 'control.sock');
  const script = `
    import { ControlServer } from '${process.cwd()}/dist/src/control/server.js';
    import { createLogger } from '${process.cwd()}/dist/src/log.js';
    const s = new ControlServer({ path: ${JSON.stringify(path)}, logger: createLogger('silent'), handler: { handle: async () => ({ uid: process.getuid() }) } });
    await s.listen();
    console.log('listening');
    process.stdin.on('end', () => s.close().then(() => process.exit(0)));
    process.stdin.resume();`;
  // the runtime directory is the daemon user's (systemd's RuntimeDirectory does the same), the socket its own
  mkdirSync(runtime, { mode: 0o700 });
  chownSync(runtime, 65534, 65534);
  const child = spawn(
    'setpriv',
    ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', script],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  t.after(() => child.stdin.end());
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the daemon-like child exited (${code})`)));
  });
  const st = statSync(path);
  assert.equal(st.uid, 65534);
  assert.equal(st.mode & 0o777, 0o600);
  const sock = await connectControl(path);
  assert.ok(sock, 'root connects');
  assert.deepEqual(await request(sock, { verb: 'status' }), { uid: 65534 });
});
