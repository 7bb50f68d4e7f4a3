// Reading a feed's source within bounds, against a real local HTTP server and real files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FeedError, openSource, readAll, type SourceRequest } from '../../src/feeds/fetch.js';
import { pullPlainList } from '../../src/feeds/plain-list.js';

let server: Server;
let base: string;
const seen: Array<{ url: string; authorization: string | undefined }> = [];
const dir = mkdtempSync(join(tmpdir(), 'ag-fetch-'));

before(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', authorization: req.headers.authorization });
    const url = new URL(req.url ?? '/', 'http://x');
    const hop = /^\/hop\/(\d+)$/.exec(url.pathname);
    if (hop) {
      const n = Number(hop[1]);
      res.writeHead(301, { location: n > 0 ? `/hop/${n - 1}` : '/list' }).end();
    } else if (url.pathname === '/list') {
      res.writeHead(200).end('198.51.100.1\n198.51.100.2\n');
    } else if (url.pathname === '/big') {
      // 1 MiB in chunks, never a content-length
      res.writeHead(200);
      for (let i = 0; i < 16; i++) res.write(Buffer.alloc(64 * 1024, 'a'));
      res.end();
    } else if (url.pathname === '/hang') {
      res.writeHead(200);
      res.write('198.51.100.1\n');
      // never ends
    } else if (url.pathname === '/elsewhere') {
      res.writeHead(302, { location: 'ftp://127.0.0.1/list' }).end();
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const req = (url: string, more: Partial<SourceRequest> = {}): SourceRequest => ({
  url,
  timeoutMs: 5_000,
  maxBytes: 1 << 20,
  maxRedirects: 3,
  ...more,
});
async function fails(r: SourceRequest, re: RegExp, kind = 'fetch'): Promise<void> {
  await assert.rejects(
    async () => readAll(await openSource(r)),
    (err: unknown) => {
      assert.ok(err instanceof FeedError, String(err));
      assert.equal(err.kind, kind);
      assert.match(err.message, re);
      return true;
    },
  );
}

test('redirects: up to the limit, no further, and never to another scheme', async () => {
  assert.equal((await readAll(await openSource(req(`${base}/hop/2`)))).toString(), '198.51.100.1\n198.51.100.2\n');
  await fails(req(`${base}/hop/3`), /redirects \(HTTP 301\); more than 3 redirects/);
  await fails(req(`${base}/list`.replace('/list', '/hop/0'), { maxRedirects: 0 }), /redirects \(HTTP 301\); give the final URL/);
  await fails(req(`${base}/elsewhere`), /only http\(s\) and local files are read/);
  await fails(req(`${base}/missing`), /answered HTTP 404/);
});

test('the byte cap ends a body that grows too large; the deadline one that never ends', async () => {
  await fails(req(`${base}/big`, { maxBytes: 100_000 }), /is larger than 100000 bytes/, 'too-big');
  assert.equal((await readAll(await openSource(req(`${base}/big`, { maxBytes: 2 << 20 })))).length, 1 << 20);
  await fails(req(`${base}/hang`, { timeoutMs: 300 }), /no complete answer within 0\.3 s/);
});

test('credentials in the URL become a basic-auth header, and errors never print them', async () => {
  seen.length = 0;
  const url = `${base.replace('http://', 'http://reader:s3cret-pw@')}/list`;
  await readAll(await openSource(req(url)));
  assert.equal(seen[0]!.authorization, `Basic ${Buffer.from('reader:s3cret-pw').toString('base64')}`);
  assert.equal(seen[0]!.url, '/list');
  await assert.rejects(
    async () => readAll(await openSource(req(url.replace('/list', '/missing')))),
    (err: Error) => {
      assert.ok(!err.message.includes('s3cret-pw'), err.message);
      assert.match(err.message, /reader:\*\*\*@/);
      return true;
    },
  );
  await assert.rejects(
    async () => readAll(await openSource(req(`${base}/missing?token=abc123`))),
    (err: Error) => !err.message.includes('abc123'),
  );
});

test('local files: a regular file is read (as a path or a file: URL); a directory or a FIFO is refused', async () => {
  const file = join(dir, 'list.txt');
  writeFileSync(file, '# local\n198.51.100.7\n');
  for (const url of [file, `file://${file}`]) {
    const { entries } = await pullPlainList({ url, timeoutMs: 1_000, maxBytes: 1_000, maxEntries: 10, widest: { ipv4: 8, ipv6: 32 } });
    assert.equal(entries.size, 1);
  }
  await fails(req(dir), /is not a regular file/);
  await fails(req(join(dir, 'nope.txt')), /cannot read .*nope\.txt: ENOENT/);
  const fifo = join(dir, 'fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  await fails(req(fifo), /is not a regular file/);
  await fails(req(file, { maxBytes: 10 }), /larger than 10 bytes/, 'too-big');
});

test('a list longer than maxEntries is refused whole', async () => {
  const file = join(dir, 'long.txt');
  writeFileSync(file, Array.from({ length: 20 }, (_, i) => `198.51.100.${i}`).join('\n'));
  await assert.rejects(
    pullPlainList({ url: file, timeoutMs: 1_000, maxBytes: 10_000, maxEntries: 10, widest: { ipv4: 8, ipv6: 32 } }),
    /more than 10 entries \(blocklists\.maxEntries\)/,
  );
});
