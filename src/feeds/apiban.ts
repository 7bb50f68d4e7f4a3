// The APIBAN v2 client: POST `<url>get` with the key as a Bearer token and `{"set":"sip","id":"<last ID>"}` (the
// first call sends "100"); each 200 answer is a page `{"ipaddress":[…],"ID":"<next ID>"}`, and asking goes on with
// the new ID until `{"ipaddress":["no new bans"],"ID":"none"}` (a 400). A bad key answers `{"ID":"unauthorized"}`, a
// rate limit `{"ipaddress":"rate limit exceeded"}`. Everything it answers is checked: a page is a bounded JSON
// document whose ID is a short token and whose addresses are parsed one by one. The key goes only into the
// Authorization header: never into a URL, a log line or an error.
import { parseTarget, type IpTarget } from '../net/ip.js';
import { FeedError, describeSource, openSource, readAll } from './fetch.js';

/** the ID APIBAN's own clients send first: "everything you have" */
export const FIRST_ID = '100';

/** an APIBAN ID as it may be stored and sent back: a short token (it is a timestamp today) */
const ID = /^[A-Za-z0-9_.:-]{1,64}$/;

export interface ApibanOptions {
  /** the API's base, ending in `/` (default https://apiban.org/api/) */
  readonly url: string;
  readonly key: string;
  readonly timeoutMs: number;
  /** one page's body at most */
  readonly maxPageBytes: number;
  /** pages asked for in one pull at most; the rest waits for the next pull */
  readonly maxPages: number;
  readonly signal?: AbortSignal;
}

export interface ApibanPull {
  /** the addresses and networks of every page read */
  readonly targets: IpTarget[];
  /** where the next pull starts: the last page's ID (the one sent, when no page came) */
  readonly cursor: string;
  readonly pages: number;
  /** items of a page that were not an address or network */
  readonly garbage: number;
  /** the error that ended paging early, after `pages` good pages (which are still worth keeping) */
  readonly error?: FeedError;
}

type Page = { readonly kind: 'page'; readonly ips: unknown[]; readonly id: string } | { readonly kind: 'end' };

/** Asks for every page after `cursor`. Fails only when not one page could be read; a later failure ends paging. */
export async function pullApiban(o: ApibanOptions, cursor: string): Promise<ApibanPull> {
  const targets: IpTarget[] = [];
  let garbage = 0;
  let pages = 0;
  let id = ID.test(cursor) ? cursor : FIRST_ID;
  for (; pages < o.maxPages; pages++) {
    let page: Page;
    try {
      page = await askPage(o, id);
    } catch (err) {
      if (pages === 0) throw err;
      return { targets, cursor: id, pages, garbage, error: err as FeedError };
    }
    if (page.kind === 'end') break;
    for (const item of page.ips) {
      const t = typeof item === 'string' ? parseTarget(item.trim()) : null;
      if (t) targets.push(t);
      else garbage++;
    }
    // an ID that does not move would have us ask for the same page for ever
    if (page.id === id) {
      const error = new FeedError(`APIBAN answered the same ID (${id}) for the next page`, 'garbage');
      if (pages === 0) throw error;
      return { targets, cursor: id, pages: pages + 1, garbage, error };
    }
    id = page.id;
  }
  return { targets, cursor: id, pages, garbage };
}

async function askPage(o: ApibanOptions, id: string): Promise<Page> {
  const url = o.url.endsWith('/') ? `${o.url}get` : `${o.url}/get`;
  const where = describeSource(url);
  const reply = await openSource({
    url,
    method: 'POST',
    headers: { authorization: `Bearer ${o.key}`, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ set: 'sip', id }),
    timeoutMs: o.timeoutMs,
    maxBytes: o.maxPageBytes,
    // the key travels in a header: a redirect could carry it anywhere
    maxRedirects: 0,
    // APIBAN answers its verdicts (the end of the list, a bad key, a rate limit) with 4xx statuses and a JSON body
    acceptStatus: (s) => s === 400 || s === 401 || s === 403 || s === 404 || s === 429,
    ...(o.signal ? { signal: o.signal } : {}),
  });
  const body = await readAll(reply);
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new FeedError(`${where} answered HTTP ${reply.status} with something that is not JSON`, 'garbage');
  }
  return readPage(json, reply.status, where);
}

/** One answer, judged by what it says (APIBAN's statuses have varied) and then by its status. */
export function readPage(json: unknown, status: number, where: string): Page {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new FeedError(`${where} answered HTTP ${status} with JSON that is not an APIBAN page`, 'garbage');
  }
  const { ID: id, ipaddress: ips } = json as { ID?: unknown; ipaddress?: unknown };
  if (id === 'unauthorized') throw new FeedError(`${where} refused the key (unauthorized): check blocklists.apiban.key`, 'unauthorized');
  if (typeof ips === 'string' && /rate limit/i.test(ips)) throw new FeedError(`${where}: rate limit exceeded`, 'rate-limit');
  if (status === 429) throw new FeedError(`${where}: rate limit exceeded (HTTP 429)`, 'rate-limit');
  if (id === 'none') return { kind: 'end' };
  if (status !== 200) throw new FeedError(`${where} answered HTTP ${status}`, 'fetch');
  if (typeof id !== 'string' || !ID.test(id) || !Array.isArray(ips)) {
    throw new FeedError(`${where} answered a page without a usable ID and address list`, 'garbage');
  }
  return { kind: 'page', ips, id };
}
