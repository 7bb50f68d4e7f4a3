// The HTTP listener: GET /metrics (Prometheus text format) and GET /healthz (200 when every part is up, else 503,
// with a JSON body naming the parts). Plain node:http: two read-only routes need no framework.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { HealthReport } from './health.js';

export interface HttpServerOptions {
  readonly host: string;
  /** a port to listen on; 0 asks the kernel for a free one */
  readonly port: number;
  readonly metrics: Metrics;
  readonly health: () => HealthReport;
  readonly logger: Logger;
}

export interface HttpServer {
  /** the port actually bound */
  readonly port: number;
  /** stops listening; idle keep-alive connections close at once, busy ones after at most a second */
  close(): Promise<void>;
}

const CLOSE_GRACE_MS = 1_000;

export async function startHttpServer(o: HttpServerOptions): Promise<HttpServer> {
  const server = createServer((req, res) => {
    handle(req, res, o).catch((err: unknown) => {
      o.logger.error({ err: (err as Error).message, path: pathOf(req) }, 'http request failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  });
  // a scraper or load balancer needs none of node's generous defaults; a stuck client must not hold a socket
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 100;
  await listen(server, o.host, o.port);
  const port = (server.address() as { port: number }).port;
  o.logger.info({ address: o.host.includes(':') ? `[${o.host}]:${port}` : `${o.host}:${port}` }, 'http listening (/metrics, /healthz)');
  return {
    port,
    close: () => close(server),
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, o: HttpServerOptions): Promise<void> {
  const path = pathOf(req);
  if (path !== '/metrics' && path !== '/healthz') {
    send(res, 404, 'text/plain; charset=utf-8', 'not found: try /metrics or /healthz\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    return;
  }
  const report = o.health();
  if (path === '/metrics') {
    // the up gauges are the health checks' last results: a scrape spawns no nft and sends no PING of its own
    o.metrics.storeUp.set(report.store.ok ? 1 : 0);
    o.metrics.firewallUp.set(report.firewall.present ? 1 : 0);
    send(res, 200, o.metrics.registry.contentType, await o.metrics.scrape());
    return;
  }
  send(res, report.status === 'ok' ? 200 : 503, 'application/json', `${JSON.stringify(healthJson(report))}\n`);
}

/** The report with its times as ISO 8601, like every other JSON ami-guard writes. */
function healthJson(report: HealthReport): unknown {
  const fallback = report.store.fallback;
  if (!fallback) return report;
  return {
    ...report,
    store: { ...report.store, fallback: { ...fallback, since: fallback.since === null ? null : new Date(fallback.since).toISOString() } },
  };
}

/** the path without the query; never logged whole, a query is whatever the client sent */
function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return (q === -1 ? url : url.slice(0, q)).slice(0, 200);
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException): void => {
      reject(new Error(`cannot listen on ${host} port ${port}: ${err.code ?? err.message} (http.host, http.port)`));
    };
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      resolve();
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}
