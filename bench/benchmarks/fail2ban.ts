// fail2ban on the same attack: the synthetic stream converted to Asterisk's security-log format (the same event's
// line from bench/fixtures/legit-phone.security.log, only the address varied), run through `fail2ban-regex` with
// Debian's stock asterisk filter. fail2ban-regex only parses and matches (no bans), so its lines/s compare with our
// parse-only figures; our pipeline figure includes Redis and nft on top.
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { addressOf, render, securityLogTemplate, SECURITY_LOG } from '../lib/stream.js';
import { cpuTimes } from '../lib/proc.js';
import { measured, type BenchContext, type BenchResult, type Benchmark, type Row } from '../lib/types.js';
import { fmtInt, now, round } from '../lib/util.js';

const FILTER = '/etc/fail2ban/filter.d/asterisk.conf';

export const fail2ban: Benchmark = {
  name: 'fail2ban',
  title: 'fail2ban-regex on the same stream (security-log format)',
  timeoutMs: 300_000,
  async run(ctx: BenchContext): Promise<BenchResult> {
    if (spawnSync('fail2ban-regex', ['--version']).error || !existsSync(FILTER)) {
      return {
        data: { skipped: 'fail2ban not installed' },
        rows: [
          {
            figure: 'fail2ban-regex (stock asterisk filter)',
            value: 'skipped',
            status: 'skipped',
            note: 'fail2ban is not installed: apt-get install -y fail2ban, then npm run bench -- fail2ban',
          },
        ],
      };
    }
    // the real line first: the stock filter must match the recorded ChallengeResponseFailed
    const fixture = await fail2banRegex(SECURITY_LOG);
    const lines = Math.min(ctx.opts.f2bLines, ctx.opts.events);
    const dir = mkdtempSync(join(tmpdir(), 'agbench-f2b-'));
    ctx.cleanups.add(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'security.log');
    const t = securityLogTemplate();
    const shape = { events: ctx.opts.events, addresses: ctx.opts.addresses };
    const out = createWriteStream(file);
    let buf: string[] = [];
    for (let k = 0; k < lines; k++) {
      buf.push(render(t, addressOf(shape, k), k));
      if (buf.length === 10_000) {
        if (!out.write(`${buf.join('\n')}\n`)) await once(out, 'drain');
        buf = [];
      }
    }
    if (buf.length > 0) out.write(`${buf.join('\n')}\n`);
    out.end();
    await once(out, 'finish');

    ctx.log(`fail2ban-regex on ${fmtInt(lines)} lines`);
    const r = await fail2banRegex(file);
    if (r.matched !== lines) throw new Error(`fail2ban-regex matched ${r.matched} of ${lines} lines`);
    const perWall = Math.round(lines / (r.wallMs / 1000));
    const perProcessed = r.processedS ? Math.round(lines / r.processedS) : null;

    const parseData = ctx.earlier['parse']?.data as Record<string, number> | undefined;
    const tpData = ctx.earlier['throughput']?.data as Record<string, number> | undefined;
    const beside: string[] = [];
    if (parseData) beside.push(`ours parse+normalise ${fmtInt(parseData['frameReaderNormaliseMemory'] ?? NaN)}/s`);
    if (tpData) beside.push(`ours full pipeline ${fmtInt(tpData['eventsPerSecond'] ?? NaN)}/s`);
    const rows: Row[] = [
      measured('fail2ban-regex (stock asterisk filter)', `${fmtInt(perWall)} lines/s`, {
        note:
          `${fmtInt(lines)} lines, all matched, ${round(r.wallMs / 1000, 1)} s wall, ${round(r.cpuMs / 1000, 1)} s CPU` +
          (perProcessed ? `; ${fmtInt(perProcessed)}/s by its own "processed in"` : '') +
          (beside.length ? `; beside: ${beside.join(', ')}` : ''),
      }),
      measured('  fail2ban-regex on the recorded log (sanity)', `${fixture.matched} of ${fixture.lines} lines matched`, {
        note: 'legit-phone.security.log: its one ChallengeResponseFailed',
      }),
    ];
    return {
      data: {
        lines,
        wallMs: Math.round(r.wallMs),
        cpuMs: Math.round(r.cpuMs),
        processedS: r.processedS,
        linesPerSecond: perWall,
        linesPerSecondProcessed: perProcessed,
        fixture,
      },
      rows,
    };
  },
};

interface RegexRun {
  readonly lines: number;
  readonly matched: number;
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly processedS: number | null;
}

function fail2banRegex(file: string): Promise<RegexRun> {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const c = spawn('fail2ban-regex', [file, FILTER], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (s: string) => {
      out = (out + s).slice(-20_000);
    });
    c.stderr.on('data', () => undefined);
    const before = cpuTimes(process.pid)?.children ?? 0;
    c.on('error', reject);
    c.on('close', (code) => {
      const wallMs = now() - t0;
      if (code !== 0) return reject(new Error(`fail2ban-regex exited ${String(code)}: ${out.slice(-500)}`));
      const m = /Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed/.exec(out);
      if (!m) return reject(new Error(`unexpected fail2ban-regex output: ${out.slice(-500)}`));
      const p = /\[processed in ([\d.]+) sec\]/.exec(out);
      const cpuMs = (cpuTimes(process.pid)?.children ?? 0) - before; // reaped children: fail2ban-regex
      resolve({ lines: Number(m[1]), matched: Number(m[3]), wallMs, cpuMs, processedS: p ? Number(p[1]) : null });
    });
  });
}
