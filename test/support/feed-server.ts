// A local HTTP server for the feed tests: it plays APIBAN's v2 API (pages after an ID, the final 400, a wrong key,
// a rate limit, garbage) and serves plain lists whose bodies a test changes between pulls. Loopback only.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ApibanRequest {
  readonly id: string;
  readonly authorization: string | undefined;
  readonly at: number;
}

/** How the fake APIBAN answers the next requests. */
export type ApibanMode =
  | 'normal'
  | 'rate-limit'
  | 'garbage'
  /** a 200 whose JSON has no ID */
  | 'bad-page'
  /** answers the page after the first one with a rate limit, so paging stops early */
  | 'rate-limit-after-first'
  | 'http-500';

export interface FeedServer {
  /** http://127.0.0.1:port/ */
  readonly base: string;
  /** the APIBAN base URL to configure (`get` is appended) */
  readonly apibanUrl: string;
  readonly apibanKey: string;
  mode: ApibanMode;
  /** every APIBAN request so far, in order */
  readonly apibanRequests: ApibanRequest[];
  /** appends a page of bans; its ID is returned (IDs increase) */
  addBans(ips: readonly unknown[]): string;
  /** serves `body` at `/lists/<name>` (a string, or bytes written as they are) */
  setList(name: string, body: string | Buffer): void;
  /** /lists/<name> answers 404 from now on */
  removeList(name: string): void;
  listUrl(name: string): string;
  /** GETs of /lists/<name> so far */
  listRequests(name: string): number;
  /** /redirect/<n>/<name> redirects n times, then to the list */
  redirectUrl(hops: number, name: string): string;
  stop(): Promise<void>;
}

export async function startFeedServer(opts: { apibanKey?: string } = {}): Promise<FeedServer> {
  const key = opts.apibanKey ?? 'apiban-test-key-5c1d9e';
  const pages: Array<{ id: string; ips: readonly unknown[] }> = [];
  let nextId = 1_700_000_000;
  const lists = new Map<string, string | Buffer>();
  const listHits = new Map<string, number>();
  const requests: ApibanRequest[] = [];
  const state = { mode: 'normal' as ApibanMode };

  const json = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const apiban = (req: IncomingMessage, res: ServerResponse, body: string): void => {
    let id = '';
    try {
      id = String((JSON.parse(body) as { id?: unknown }).id ?? '');
    } catch {
      // judged below
    }
    const authorization = req.headers.authorization;
    requests.push({ id, authorization, at: Date.now() });
    if (authorization !== `Bearer ${key}`) return json(res, 403, { ipaddress: ['unauthorized'], ID: 'unauthorized' });
    if (state.mode === 'rate-limit') return json(res, 400, { ipaddress: 'rate limit exceeded', ID: 'none' });
    if (state.mode === 'http-500') return json(res, 500, { error: 'oops' });
    if (state.mode === 'garbage') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><body>maintenance</body></html>');
      return;
    }
    if (state.mode === 'bad-page') return json(res, 200, { ipaddress: ['198.51.100.1'] });
    const from = Number(id);
    const next = pages.find((p) => Number(p.id) > (Number.isFinite(from) ? from : 0));
    if (!next) return json(res, 400, { ipaddress: ['no new bans'], ID: 'none' });
    if (state.mode === 'rate-limit-after-first' && next !== pages.find((p) => Number(p.id) > 100)) {
      return json(res, 400, { ipaddress: 'rate limit exceeded', ID: 'none' });
    }
    return json(res, 200, { ipaddress: next.ips, ID: next.id });
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'POST' && url.pathname === '/api/get') return apiban(req, res, Buffer.concat(chunks).toString());
      const redirect = /^\/redirect\/(\d+)\/([^/]+)$/.exec(url.pathname);
      if (redirect) {
        const n = Number(redirect[1]);
        res.writeHead(302, { location: n > 1 ? `/redirect/${n - 1}/${redirect[2]}` : `/lists/${redirect[2]}` });
        res.end();
        return;
      }
      const list = /^\/lists\/([^/]+)$/.exec(url.pathname);
      if (req.method === 'GET' && list) {
        const name = list[1]!;
        listHits.set(name, (listHits.get(name) ?? 0) + 1);
        const body = lists.get(name);
        if (body === undefined) {
          res.writeHead(404);
          res.end('not found');
          return;
        }
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(body);
        return;
      }
      res.writeHead(404);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const base = `http://127.0.0.1:${port}/`;
  return {
    base,
    apibanUrl: `${base}api/`,
    apibanKey: key,
    get mode() {
      return state.mode;
    },
    set mode(m: ApibanMode) {
      state.mode = m;
    },
    apibanRequests: requests,
    addBans(ips) {
      const id = String(nextId++);
      pages.push({ id, ips });
      return id;
    },
    setList(name, body) {
      lists.set(name, body);
    },
    removeList(name) {
      lists.delete(name);
    },
    listUrl: (name) => `${base}lists/${name}`,
    listRequests: (name) => listHits.get(name) ?? 0,
    redirectUrl: (hops, name) => `${base}redirect/${hops}/${name}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
