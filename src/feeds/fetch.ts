// Reads a feed's source, whatever it answers, within bounds: an overall deadline (the body included), a byte cap
// counted on the decoded body (so neither a 10 GB list nor a gzip bomb can take the daemon's memory), a few
// redirects and never from https to http, and a local file only when it is a regular file. Errors say what went
// wrong and where, with the URL's secrets masked; request headers (the APIBAN key) never appear in them.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { redactUrl } from '../log.js';

/** A failed pull, in words safe for a log line, an error field in Redis and `status`. */
export class FeedError extends Error {
  override readonly name = 'FeedError';
  constructor(
    message: string,
    /** APIBAN's "rate limit exceeded": retried with backoff like any failure, but worth naming */
    readonly kind: 'fetch' | 'garbage' | 'unauthorized' | 'rate-limit' | 'too-big' = 'fetch',
  ) {
    super(message);
  }
}

export interface SourceRequest {
  readonly url: string;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  /** redirects followed at most (0: a redirect is an error) */
  readonly maxRedirects: number;
  readonly method?: 'GET' | 'POST';
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  /** statuses whose body is read rather than refused (APIBAN ends its paging with a 400) */
  readonly acceptStatus?: (status: number) => boolean;
  /** aborts the request, e.g. at shutdown */
  readonly signal?: AbortSignal;
}

export interface SourceReply {
  readonly status: number;
  /** the body in chunks as they arrive; iterate once */
  readonly chunks: AsyncIterable<Buffer>;
}

const USER_AGENT = 'ami-guard (+https://github.com/ami-guard/ami-guard)';

/** The URL as it may be printed: userinfo password and secret-looking query parameters masked. */
export function describeSource(url: string): string {
  return isLocalPath(url) ? url : redactUrl(url);
}

export function isLocalPath(url: string): boolean {
  return url.startsWith('file:') || isAbsolute(url);
}

/**
 * Opens a source and hands its body over in chunks, enforcing the deadline and the byte cap until the last chunk is
 * read. The caller must read the chunks (or return from the loop early, which ends the request).
 */
export async function openSource(req: SourceRequest): Promise<SourceReply> {
  return isLocalPath(req.url) ? openFile(req) : openHttp(req);
}

/** The whole body as one Buffer, within the same bounds (an APIBAN page is one JSON document). */
export async function readAll(reply: SourceReply): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of reply.chunks) parts.push(chunk);
  return Buffer.concat(parts);
}

async function openFile(req: SourceRequest): Promise<SourceReply> {
  let path: string;
  try {
    path = req.url.startsWith('file:') ? fileURLToPath(req.url) : req.url;
  } catch {
    throw new FeedError(`${describeSource(req.url)} is not a usable file URL`);
  }
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw new FeedError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  // a FIFO or a device could block or never end
  if (!st.isFile()) throw new FeedError(`${path} is not a regular file`);
  const stream = createReadStream(path, { highWaterMark: 64 * 1024 });
  const chunks = bounded(stream as AsyncIterable<Buffer>, req, path, () => stream.destroy());
  return { status: 200, chunks };
}

async function openHttp(req: SourceRequest): Promise<SourceReply> {
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    throw new FeedError(`${describeSource(req.url)} is not a URL`);
  }
  // A controller and timer of our own (as the webhook does): one deadline for the redirects and the body together.
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new FeedError(`no complete answer within ${req.timeoutMs / 1000} s`)), req.timeoutMs);
  timer.unref();
  const onAbort = (): void => controller.abort(new FeedError('aborted (shutting down)'));
  req.signal?.addEventListener('abort', onAbort, { once: true });
  if (req.signal?.aborted) onAbort();
  const done = (): void => {
    clearTimeout(timer);
    req.signal?.removeEventListener('abort', onAbort);
  };
  try {
    for (let redirects = 0; ; redirects++) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new FeedError(`${describeSource(url.href)}: only http(s) and local files are read`);
      // fetch refuses credentials in the URL: they become a basic-auth header, as for the webhook
      const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...req.headers };
      const bare = new URL(url.href);
      if (url.username || url.password) {
        headers['authorization'] ??=
          `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
        bare.username = '';
        bare.password = '';
      }
      let res: Response;
      try {
        res = await fetch(bare, {
          method: req.method ?? 'GET',
          headers,
          ...(req.body !== undefined ? { body: req.body } : {}),
          redirect: 'manual',
          signal: controller.signal,
        });
      } catch (err) {
        throw new FeedError(`${describeSource(url.href)}: ${reason(controller.signal.aborted ? controller.signal.reason : err)}`);
      }
      if (res.status >= 300 && res.status < 400 && res.headers.has('location')) {
        await res.body?.cancel().catch(() => undefined);
        if (redirects >= req.maxRedirects) {
          throw new FeedError(
            `${describeSource(url.href)} redirects (HTTP ${res.status})${req.maxRedirects === 0 ? '; give the final URL' : `; more than ${req.maxRedirects} redirects`}`,
          );
        }
        let next: URL;
        try {
          next = new URL(res.headers.get('location')!, url);
        } catch {
          throw new FeedError(`${describeSource(url.href)} redirects to an invalid URL`);
        }
        if (url.protocol === 'https:' && next.protocol !== 'https:') {
          throw new FeedError(`${describeSource(url.href)} redirects from https to ${next.protocol}//: refused`);
        }
        // credentials are for the host they were given for
        if (next.origin !== url.origin) {
          next.username = '';
          next.password = '';
        }
        url = next;
        continue;
      }
      if (!(res.status >= 200 && res.status < 300) && !req.acceptStatus?.(res.status)) {
        await res.body?.cancel().catch(() => undefined);
        throw new FeedError(`${describeSource(url.href)} answered HTTP ${res.status}`);
      }
      const where = describeSource(url.href);
      const body = res.body as unknown as AsyncIterable<Uint8Array> | null;
      const chunks = bounded(body ?? empty(), req, where, () => controller.abort(), controller.signal, done);
      return { status: res.status, chunks };
    }
  } catch (err) {
    done();
    throw err;
  }
}

async function* empty(): AsyncIterable<Uint8Array> {
  // no body
}

/** Passes chunks on while they stay within the byte cap and the deadline; ends the source however the loop ends. */
async function* bounded(
  source: AsyncIterable<Uint8Array>,
  req: SourceRequest,
  where: string,
  stop: () => void,
  signal?: AbortSignal,
  done?: () => void,
): AsyncGenerator<Buffer> {
  let bytes = 0;
  try {
    for await (const chunk of source) {
      bytes += chunk.length;
      if (bytes > req.maxBytes) throw new FeedError(`${where} is larger than ${req.maxBytes} bytes`, 'too-big');
      yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    }
  } catch (err) {
    if (err instanceof FeedError) throw err;
    throw new FeedError(`${where}: ${reason(signal?.aborted ? signal.reason : err)}`);
  } finally {
    stop();
    done?.();
  }
}

/** The cause of a failed request in a few words: the errno or TLS code, or our own deadline's message. */
function reason(err: unknown): string {
  if (err instanceof FeedError) return err.message;
  const e = err as { message?: string; code?: string; cause?: { code?: string; message?: string } } | null;
  return e?.cause?.code ?? e?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}
