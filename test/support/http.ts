// HTTP helpers for the service tests: free ports, a recording webhook receiver, readers for /healthz and Prometheus text.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { HealthReport } from '../../src/http/health.js';
export { freePort } from './ports.js';

export interface ReceivedRequest {
  readonly method: string;
  /** path and query as sent */
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  /** true once the connection of this request has closed */
  closed: boolean;
  /** true once a response has been sent */
  answered: boolean;
}

export interface Receiver {
  readonly port: number;
  readonly requests: ReceivedRequest[];
  /** resolves once `n` requests have arrived (bounded) */
  waitFor(n: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  stop(): Promise<void>;
}

/**
 * A webhook receiver on 127.0.0.1. `answer` decides each request's fate: a status code, or `'hang'` to hold it open
 * and never answer.
 */
export async function startReceiver(answer: (req: ReceivedRequest, index: number) => number | 'hang' = () => 200): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const waiters: Array<() => void> = [];
  const hanging = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r: ReceivedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        closed: false,
        answered: false,
      };
      res.on('close', () => {
        r.closed = true;
        hanging.delete(res);
      });
      requests.push(r);
      const fate = answer(r, requests.length - 1);
      if (fate === 'hang') {
        hanging.add(res);
      } else {
        r.answered = true;
        res.writeHead(fate, { 'Content-Type': 'text/plain' }).end('ok\n');
      }
      for (const w of waiters.splice(0)) w();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    requests,
    async waitFor(n, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (requests.length < n) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} webhook requests (got ${requests.length})`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
      return requests;
    },
    stop() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** Parses the Prometheus text format (enough of it for prom-client's output). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of the samples named `name` whose labels include `labels`; undefined when there is none. */
export function metric(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return hits.length === 0 ? undefined : hits.reduce((sum, s) => sum + s.value, 0);
}

export async function getText(url: string, init?: RequestInit): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

/** /healthz of a daemon's listener at `base` (http://host:port), parsed */
export async function getHealth(base: string): Promise<{ status: number; type: string | null; report: HealthReport }> {
  const r = await getText(`${base}/healthz`);
  return { status: r.status, type: r.type, report: JSON.parse(r.body) as HealthReport };
}

/** /metrics of a daemon's listener at `base`, parsed */
export async function scrapeMetrics(base: string): Promise<Sample[]> {
  return parseMetrics((await getText(`${base}/metrics`)).body);
}
