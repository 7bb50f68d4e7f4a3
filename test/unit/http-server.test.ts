// The HTTP listener on a real socket: /healthz writes times as ISO 8601 like every other JSON of ami-guard, and
// /metrics carries the up gauges from the health checks' last results.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { startHttpServer } from '../../src/http/server.js';
import { Metrics } from '../../src/metrics.js';
import type { HealthReport } from '../../src/http/health.js';
import { getText, metric, parseMetrics } from '../support/http.js';

test("/healthz: the fallback's since as ISO 8601; /metrics: store_up and firewall_up follow the report", async (t) => {
  let report: HealthReport = {
    status: 'down',
    down: ['store'],
    ami: { connected: true },
    store: {
      kind: 'redis',
      ok: false,
      rttMs: null,
      fallback: { active: true, since: Date.UTC(2026, 10, 21, 20, 36, 37, 387), pendingWriteback: 2 },
    },
    firewall: { present: true },
  };
  const metrics = new Metrics();
  const server = await startHttpServer({ host: '127.0.0.1', port: 0, metrics, health: () => report, logger: pino({ level: 'silent' }) });
  t.after(() => server.close());
  const base = `http://127.0.0.1:${server.port}`;

  const down = await getText(`${base}/healthz`);
  assert.equal(down.status, 503);
  const body = JSON.parse(down.body) as { store: { fallback: { since: unknown; active: boolean } } };
  assert.deepEqual(body.store.fallback, { active: true, since: '2026-11-21T20:36:37.387Z', pendingWriteback: 2 });
  let m = parseMetrics((await getText(`${base}/metrics`)).body);
  assert.equal(metric(m, 'ami_guard_store_up'), 0);
  assert.equal(metric(m, 'ami_guard_firewall_up'), 1);

  report = {
    ...report,
    status: 'down',
    down: ['firewall'],
    store: { kind: 'redis', ok: true, rttMs: 0.4, fallback: { active: false, since: null, pendingWriteback: 0 } },
    firewall: { present: false },
  };
  const back = JSON.parse((await getText(`${base}/healthz`)).body) as { store: { fallback: { since: unknown } } };
  assert.equal(back.store.fallback.since, null);
  m = parseMetrics((await getText(`${base}/metrics`)).body);
  assert.equal(metric(m, 'ami_guard_store_up'), 1);
  assert.equal(metric(m, 'ami_guard_firewall_up'), 0);
});
