// The metric definitions: conventional names, counters present at 0 with their known labels, label values from
// fixed lists only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LABEL_VALUES, Metrics, OTHER, counterTotal } from '../../src/metrics.js';
import { metric, parseMetrics } from '../support/http.js';

function types(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, m[2]!);
  return out;
}

test('process and Node.js metrics under their usual names, and ami_guard_build_info', async () => {
  const text = await new Metrics({ processMetrics: true, build: { version: '1.2.3', node: 'pbx-7' } }).scrape();
  const t = types(text);
  for (const name of [
    'process_cpu_seconds_total',
    'process_resident_memory_bytes',
    'process_start_time_seconds',
    'process_open_fds',
    'nodejs_heap_size_used_bytes',
    'nodejs_heap_size_total_bytes',
    'nodejs_eventloop_lag_seconds',
    'nodejs_gc_duration_seconds',
    'nodejs_version_info',
    'nodejs_active_handles',
  ]) {
    assert.ok(t.has(name), `${name} missing`);
  }
  assert.ok(![...t.keys()].some((n) => n.startsWith('ami_guard_process_') || n.startsWith('ami_guard_nodejs_')));
  const samples = parseMetrics(text);
  assert.equal(metric(samples, 'ami_guard_build_info', { version: '1.2.3', node: 'pbx-7' }), 1);
});

test('counters end in _total and nothing else does', async () => {
  const t = types(await new Metrics({ processMetrics: true, build: { version: '1', node: 'n' } }).scrape());
  assert.ok(t.size > 40);
  for (const [name, type] of t) {
    if (type === 'counter') assert.match(name, /_total$/, name);
    else assert.doesNotMatch(name, /_total$/, `${type} ${name}`);
  }
});

test('every counter is present at 0 before its first event, with every known label value', async () => {
  const text = await new Metrics().scrape();
  const samples = parseMetrics(text);
  for (const [name, type] of types(text)) {
    if (type !== 'counter') continue;
    const own = samples.filter((s) => s.name === name);
    assert.ok(own.length > 0, `${name} has no series`);
    for (const s of own) assert.equal(s.value, 0, `${name} ${JSON.stringify(s.labels)}`);
  }
  const series = (name: string) => samples.filter((s) => s.name === name);
  assert.equal(series('ami_guard_security_events_total').length, (LABEL_VALUES.kind.length + 1) * (LABEL_VALUES.service.length + 1));
  assert.equal(metric(samples, 'ami_guard_security_events_total', { kind: 'ChallengeResponseFailed', service: 'PJSIP' }), 0);
  for (const reason of LABEL_VALUES.banReason) assert.equal(metric(samples, 'ami_guard_bans_total', { reason }), 0);
  for (const result of LABEL_VALUES.notification) assert.equal(metric(samples, 'ami_guard_webhook_notifications_total', { result }), 0);
  for (const source of LABEL_VALUES.unbanSource) assert.equal(metric(samples, 'ami_guard_unbans_total', { source }), 0);
  for (const op of LABEL_VALUES.nftOp) assert.equal(metric(samples, 'ami_guard_nft_apply_seconds_count', { op }), 0);
  for (const path of LABEL_VALUES.banPath) assert.equal(metric(samples, 'ami_guard_ban_latency_seconds_count', { path }), 0);
  assert.equal(metric(samples, 'ami_guard_store_up'), 0);
  assert.equal(metric(samples, 'ami_guard_firewall_up'), 0);
});

test('label values outside the fixed lists are counted as other', async () => {
  const m = new Metrics();
  m.events.inc({ kind: 'ChallengeResponseFailed', service: 'PJSIP' });
  m.events.inc({ kind: 'SomethingAsteriskAddsLater', service: 'PJSIP' });
  m.events.inc({ kind: 'InvalidPassword', service: 'x'.repeat(500) });
  m.bans.inc({ reason: 'whatever a hostile Redis said' }, 2);
  const samples = parseMetrics(await m.scrape());
  assert.equal(metric(samples, 'ami_guard_security_events_total', { kind: 'ChallengeResponseFailed', service: 'PJSIP' }), 1);
  assert.equal(metric(samples, 'ami_guard_security_events_total', { kind: OTHER, service: 'PJSIP' }), 1);
  assert.equal(metric(samples, 'ami_guard_security_events_total', { kind: 'InvalidPassword', service: OTHER }), 1);
  assert.equal(metric(samples, 'ami_guard_bans_total', { reason: OTHER }), 2);
  const values = new Set(samples.flatMap((s) => Object.values(s.labels)));
  assert.ok(![...values].some((v) => v.length > 40 || v.includes(' ')), [...values].join(','));
  assert.equal(await counterTotal(m.events), 3);
});

test('scrape hooks run before every scrape (a batched hot path adds its counts there)', async () => {
  const m = new Metrics();
  let pending = 0;
  m.onScrape(() => {
    m.failures.inc({ kind: 'InvalidAccountID' }, pending);
    pending = 0;
  });
  pending = 7;
  assert.equal(metric(parseMetrics(await m.scrape()), 'ami_guard_failures_total', { kind: 'InvalidAccountID' }), 7);
  pending = 3;
  assert.equal(metric(parseMetrics(await m.scrape()), 'ami_guard_failures_total', { kind: 'InvalidAccountID' }), 10);
});
