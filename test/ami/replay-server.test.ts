import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { AmiFrameReader, frameText } from '../../src/ami/frame-reader.js';
import { headersOf } from '../../src/ami/message.js';
import { startReplayServer, type ReplayServer } from '../support/replay-ami-server.js';
import { amiBytes, fixturePath, jsonlRecords } from './fixtures.js';
import { waitFor } from './wait.js';

const USER = 'amiguard';
const SECRET = 'replay-test-secret';
const servers: ReplayServer[] = [];
const sockets: Socket[] = [];
after(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => s.stop()));
});

async function server(scenario: string, speed: number, autoplay = true): Promise<ReplayServer> {
  const s = await startReplayServer({ recording: fixturePath(scenario, 'jsonl'), username: USER, secret: SECRET, speed, autoplay });
  servers.push(s);
  return s;
}

interface Frame {
  readonly raw: string;
  readonly banner: boolean;
  /** first value of each header, keys lower-cased */
  readonly headers: Record<string, string>;
}

/** A bare TCP client that keeps every byte and every frame it receives. */
class RawClient {
  bytes = Buffer.alloc(0);
  frames: Frame[] = [];
  closed = false;
  private readonly reader = new AmiFrameReader((f) => {
    const headers: Record<string, string> = {};
    if (!f.banner) for (const [k, v] of headersOf(f)) headers[k] = v[0]!;
    this.frames.push({ raw: frameText(f), banner: f.banner, headers });
  });
  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.bytes = Buffer.concat([this.bytes, chunk]);
      this.reader.push(chunk);
    });
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }
  static async open(port: number): Promise<RawClient> {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    await once(socket, 'connect');
    return new RawClient(socket);
  }
  send(text: string): void {
    this.socket.write(text);
  }
  async reply(actionId: string): Promise<Frame> {
    await waitFor(() => this.frames.some((f) => f.headers['actionid'] === actionId), 2000, `reply to ${actionId}`);
    return this.frames.find((f) => f.headers['actionid'] === actionId)!;
  }
}

test('a client that logs in like the capture client receives the .ami file byte for byte', async () => {
  const s = await server('legit-phone', Infinity);
  const c = await RawClient.open(s.port);
  c.send(`Action: Login\r\nActionID: capture-login-1\r\nUsername: ${USER}\r\nSecret: ${SECRET}\r\nEvents: on\r\n\r\n`);
  await s.playDone;
  const expected = amiBytes('legit-phone');
  await waitFor(() => c.bytes.length >= expected.length, 2000, 'all bytes');
  assert.ok(c.bytes.equals(expected));
  const events = jsonlRecords('legit-phone').filter((r) => r.raw.startsWith('Event: ')).length;
  assert.equal(s.sent.events, events);
  assert.equal(s.sent.messages, events);
});

test('asterisk-restart: conn 1 ends with the socket closed, the next login gets conn 2', async () => {
  const s = await server('asterisk-restart', Infinity);
  const first = await RawClient.open(s.port);
  first.send(`Action: Login\r\nActionID: capture-login-1\r\nUsername: ${USER}\r\nSecret: ${SECRET}\r\n\r\n`);
  await waitFor(() => first.closed, 2000, 'server closes conn 1');
  const second = await RawClient.open(s.port);
  second.send(`Action: Login\r\nActionID: capture-login-2\r\nUsername: ${USER}\r\nSecret: ${SECRET}\r\n\r\n`);
  await s.playDone;
  const expected = amiBytes('asterisk-restart');
  await waitFor(() => first.bytes.length + second.bytes.length >= expected.length, 2000, 'all bytes');
  assert.ok(Buffer.concat([first.bytes, second.bytes]).equals(expected));
  assert.equal(first.frames.at(-1)?.headers['event'], 'Shutdown');
  assert.equal(s.connections, 2);
  assert.equal(s.logins, 2);
});

test('Login, Ping, Events, Logoff and refusals are answered as Asterisk does; LF-only actions are accepted', async () => {
  const s = await server('legit-phone', Infinity, false);
  const c = await RawClient.open(s.port);
  await waitFor(() => c.frames.length >= 1, 2000, 'banner');
  assert.deepEqual([c.frames[0]?.banner, c.frames[0]?.raw], [true, 'Asterisk Call Manager/11.0.0\r\n']);

  c.send('Action: Ping\r\nActionID: early\r\n\r\n');
  assert.deepEqual((await c.reply('early')).headers, { response: 'Error', actionid: 'early', message: 'Permission denied' });

  c.send(`Action: Login\nActionID: l1\nUsername: AMIGUARD\nSecret: ${SECRET}\n\n`);
  assert.deepEqual((await c.reply('l1')).headers, { response: 'Success', actionid: 'l1', message: 'Authentication accepted' });

  c.send('Action: Ping\r\nActionID: p1\r\n\r\n');
  const pong = (await c.reply('p1')).headers;
  assert.equal(pong['ping'], 'Pong');
  assert.match(String(pong['timestamp']), /^\d{10}\.\d{6}$/);

  c.send('Action: Events\r\nActionID: e1\r\nEventMask: security,system\r\n\r\n');
  assert.deepEqual((await c.reply('e1')).headers, { response: 'Success', actionid: 'e1', events: 'On' });

  c.send('Action: Originate\r\nActionID: o1\r\n\r\n');
  assert.equal((await c.reply('o1')).headers['message'], 'Invalid/unknown command');

  s.setPingResponses(false);
  const sawP3 = new Promise<void>((resolve) => s.on('action', (h) => h.get('actionid')?.[0] === 'p3' && resolve()));
  c.send('Action: Ping\r\nActionID: p2\r\n\r\nAction: Ping\r\nActionID: p3\r\n\r\n');
  await sawP3;
  s.setPingResponses(true);
  c.send('Action: Ping\r\nActionID: p4\r\n\r\n');
  await c.reply('p4');
  assert.ok(!c.frames.some((f) => f.headers['actionid'] === 'p2' || f.headers['actionid'] === 'p3'), 'pings sent while off were answered');
  assert.equal(s.sent.events, 0, 'autoplay is off');

  c.send('Action: Logoff\r\nActionID: bye\r\n\r\n');
  assert.deepEqual((await c.reply('bye')).headers, { response: 'Goodbye', actionid: 'bye', message: 'Thanks for all the fish.' });
  await waitFor(() => c.closed, 2000, 'close after Logoff');
});

test('a wrong secret gets "Authentication failed" and the socket is closed', async () => {
  const s = await server('legit-phone', Infinity);
  const c = await RawClient.open(s.port);
  c.send(`Action: Login\r\nActionID: bad\r\nUsername: ${USER}\r\nSecret: nope\r\n\r\n`);
  assert.deepEqual((await c.reply('bad')).headers, { response: 'Error', actionid: 'bad', message: 'Authentication failed' });
  await waitFor(() => c.closed, 2000, 'close after failed login');
  assert.equal(s.logins, 0);
});

test('recorded timing is honoured, scaled by speed', async () => {
  // asterisk-restart conn 1: login reply at 3 ms, ChallengeSent at 1239 ms, Shutdown at 3252 ms.
  const s = await server('asterisk-restart', 20);
  const c = await RawClient.open(s.port);
  const started = performance.now();
  c.send(`Action: Login\r\nActionID: x\r\nUsername: ${USER}\r\nSecret: ${SECRET}\r\n\r\n`);
  await waitFor(() => c.frames.some((f) => f.headers['event'] === 'ChallengeSent'), 2000, 'ChallengeSent');
  const challengeAt = performance.now() - started;
  await waitFor(() => c.frames.some((f) => f.headers['event'] === 'Shutdown'), 2000, 'Shutdown');
  const shutdownAt = performance.now() - started;
  assert.ok(challengeAt >= 55 && challengeAt < 400, `ChallengeSent after ${challengeAt} ms, expected ~62`);
  assert.ok(shutdownAt >= 155 && shutdownAt < 600, `Shutdown after ${shutdownAt} ms, expected ~162`);
});

test('drop() destroys client sockets; inject() reaches logged-in clients; play() starts a held playback', async () => {
  const s = await server('legit-phone', Infinity, false);
  const c = await RawClient.open(s.port);
  c.send(`Action: Login\r\nActionID: l\r\nUsername: ${USER}\r\nSecret: ${SECRET}\r\n\r\n`);
  await s.loggedIn;
  assert.equal(s.inject('Event: Injected\r\nPrivilege: security,all\r\n\r\n'), 1);
  await waitFor(() => c.frames.some((f) => f.headers['event'] === 'Injected'), 2000, 'injected event');
  s.play();
  await s.playDone;
  assert.equal(s.sent.events, jsonlRecords('legit-phone').filter((r) => r.raw.startsWith('Event: ')).length + 1);
  s.drop();
  await waitFor(() => c.closed, 2000, 'dropped');
});
