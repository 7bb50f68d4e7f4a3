// deploy/grafana/ami-guard.json: every query parses as PromQL and asks only for metrics, labels and label values
// that ami-guard exports, and the panels an operator needs are there without overlapping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parser } from '@prometheus-io/lezer-promql';
import { Metrics } from '../../src/metrics.js';
import { parseMetrics } from '../support/http.js';

interface Target {
  expr: string;
  refId: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Target[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; query: unknown }> };
}

const dashboard = JSON.parse(readFileSync('deploy/grafana/ami-guard.json', 'utf8')) as Dashboard;
/** labels Prometheus adds to every series it scrapes */
const TARGET_LABELS = new Set(['instance', 'job']);

async function exported(): Promise<Map<string, Map<string, Set<string>>>> {
  const text = await new Metrics({ processMetrics: true, build: { version: '0.0.0', node: 'n' } }).scrape();
  const out = new Map<string, Map<string, Set<string>>>();
  for (const s of parseMetrics(text)) {
    const labels = out.get(s.name) ?? new Map<string, Set<string>>();
    for (const [k, v] of Object.entries(s.labels)) labels.set(k, (labels.get(k) ?? new Set()).add(v));
    out.set(s.name, labels);
  }
  return out;
}

interface Query {
  metrics: Array<{ name: string; matchers: Array<[string, string, string]> }>;
  grouping: string[];
  errors: string[];
}

/** Metric names with their matchers, grouping labels and syntax errors of one PromQL expression. */
function analyse(expr: string): Query {
  const q: Query = { metrics: [], grouping: [], errors: [] };
  const tree = parser.parse(expr);
  const text = (from: number, to: number) => expr.slice(from, to);
  tree.iterate({
    enter(n) {
      if (n.type.isError) q.errors.push(`at ${n.from}: ${text(Math.max(0, n.from - 10), n.to + 10)}`);
      if (n.name === 'VectorSelector') {
        const name = n.node.getChild('Identifier');
        const matchers: Array<[string, string, string]> = [];
        for (const m of n.node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? []) {
          const label = m.getChild('LabelName');
          const op = m.getChild('MatchOp');
          const value = m.getChild('StringLiteral');
          if (label && op && value)
            matchers.push([text(label.from, label.to), text(op.from, op.to), JSON.parse(text(value.from, value.to)) as string]);
        }
        if (name) q.metrics.push({ name: text(name.from, name.to), matchers });
      }
      if (n.name === 'GroupingLabels') for (const l of n.node.getChildren('LabelName')) q.grouping.push(text(l.from, l.to));
    },
  });
  return q;
}

const queries = (): Array<{ panel: string; expr: string }> =>
  dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr.replaceAll('$__rate_interval', '5m') })));

test('every query parses and reads only exported metrics, labels and label values', async () => {
  const known = await exported();
  const all = queries();
  assert.ok(all.length >= 20);
  for (const { panel, expr } of all) {
    const q = analyse(expr);
    assert.deepEqual(q.errors, [], `${panel}: ${expr}`);
    assert.ok(q.metrics.length > 0, `${panel}: no metric in ${expr}`);
    for (const m of q.metrics) {
      const labels = known.get(m.name);
      assert.ok(labels, `${panel}: ${m.name} is not exported`);
      for (const [label, op, value] of m.matchers) {
        if (TARGET_LABELS.has(label)) continue;
        assert.ok(labels.has(label), `${panel}: ${m.name} has no label ${label}`);
        if (op === '=') assert.ok(labels.get(label)!.has(value), `${panel}: ${m.name}{${label}="${value}"} never exists`);
      }
    }
    for (const g of q.grouping) {
      if (TARGET_LABELS.has(g)) continue;
      assert.ok(
        q.metrics.some((m) => known.get(m.name)?.has(g)),
        `${panel}: grouping by ${g}, which ${q.metrics.map((m) => m.name).join(', ')} lack`,
      );
    }
  }
});

test('the checker itself catches a typo, an unknown label and broken syntax', async () => {
  const known = await exported();
  assert.ok(!known.has('ami_guard_ban_total'));
  assert.ok(!known.get('ami_guard_bans_total')!.has('kind'));
  assert.ok(analyse('sum(rate(ami_guard_bans_total[5m])').errors.length > 0);
  assert.deepEqual(analyse('sum by (reason) (increase(ami_guard_bans_total{instance=~"a"}[5m]))').grouping, ['reason']);
});

test('bans over time, events by kind, ban latency and the fallback state, on a grid without overlaps', () => {
  const titles = dashboard.panels.map((p) => p.title.toLowerCase());
  for (const want of ['bans over time', 'security events by kind', 'ban latency', 'local fallback']) {
    assert.ok(
      titles.some((t) => t.includes(want)),
      `no panel about ${want}`,
    );
  }
  const exprs = queries().map((q) => q.expr);
  assert.ok(exprs.some((e) => /ami_guard_nft_apply_seconds_bucket\{op="add"/.test(e)));
  assert.ok(exprs.some((e) => /histogram_quantile\(0\.99, .*ami_guard_ban_latency_seconds_bucket/.test(e)));
  assert.ok(exprs.some((e) => /ami_guard_store_fallback_active/.test(e)));
  const boxes = dashboard.panels.map((p) => ({ title: p.title, ...p.gridPos }));
  for (const b of boxes) assert.ok(b.x >= 0 && b.x + b.w <= 24, `${b.title} outside the 24 columns`);
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i]!;
      const b = boxes[j]!;
      const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
      assert.ok(!overlap, `${a.title} overlaps ${b.title}`);
    }
  }
  assert.equal(new Set(dashboard.panels.map((p) => p.id)).size, dashboard.panels.length, 'panel ids are unique');
  assert.deepEqual(
    dashboard.templating.list.map((v) => v.name),
    ['datasource', 'instance'],
  );
});
