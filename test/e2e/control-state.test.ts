// The operator's verbs through the control socket and a SIGHUP reload, with the embedded store persisting to its
// state file (issue 14 items 1, 4, 5 and 6 together), with the real daemon, real nft in a namespace and the real CLI:
// a ban and a network ban made through the socket are in the state file, survive a reload and a restart as the
// operator's (reason manual, the note kept, not re-learnt from the kernel as `restored`), and the network still covers
// its addresses afterwards.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBed } from '../support/bed.js';
import { cli } from '../support/cli.js';

function stateDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'ag-control-state-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'state');
}

/** the bans of the state file as "address reason" (see the never-lost test for its layout) */
function bansInStateFile(dir: string): string[] {
  return readFileSync(join(dir, 'store.json'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('["b"'))
    .map((l) => JSON.parse(l) as unknown[])
    .map((b) => `${String(b[1])} ${String(b[4])}`)
    .sort();
}

test('embedded store: bans made through the socket reach the state file, survive a reload and a restart, and the network still covers its addresses', async (t) => {
  const cleanup = (fn: () => Promise<void>): void => t.after(fn);
  const dir = stateDir(t);
  const first = await startBed({ cleanup, recording: 'legit-phone', config: { store: { stateDir: dir } } });
  assert.deepEqual(await first.settle(), []);
  const run = (configFile: string, ...args: string[]) => cli([...args, '--config', configFile]);

  assert.equal((await run(first.configFile, 'ban', '198.51.100.9', '--for', '1h', '--reason', 'by hand')).code, 0);
  const net = await run(first.configFile, 'ban', '203.0.113.0/24', '--for', '2h');
  assert.equal(net.code, 0, net.stderr);

  // a reload (a new maxretry and ignoreip entry) keeps the bans in the kernel and in the store
  const cfg = JSON.parse(readFileSync(first.configFile, 'utf8')) as Record<string, Record<string, unknown>>;
  writeFileSync(first.configFile, JSON.stringify({ ...cfg, policy: { ...cfg.policy, maxretry: 7, ignoreip: ['192.0.2.77'] } }));
  first.daemon.child.kill('SIGHUP');
  await first.daemon.waitForLog((l) => l.msg === 'configuration reloaded');
  const status = await run(first.configFile, 'status', '--json');
  assert.equal(status.code, 0, status.stderr);
  assert.equal((JSON.parse(status.stdout) as { daemon: { reload: { ok: boolean } } }).daemon.reload.ok, true);
  assert.deepEqual((await first.elements()).filter((e) => !e.startsWith('192.0.2.')).sort(), ['198.51.100.9', '203.0.113.0/24']);

  assert.equal(await first.daemon.stop(), 0);
  assert.ok(bansInStateFile(dir).includes('198.51.100.9 manual'), bansInStateFile(dir).join('\n'));
  assert.ok(bansInStateFile(dir).includes('203.0.113.0/24 manual'), bansInStateFile(dir).join('\n'));

  // the restarted daemon knows them as the operator made them, from its state file, not as kernel elements
  const second = await startBed({ cleanup, recording: 'legit-phone', ns: first.ns, config: { store: { stateDir: dir } } });
  await second.daemon.waitForLog((l) => l.msg === 'reconciled firewall with store' && l.why === 'start-up', 30_000);
  assert.deepEqual(
    second.daemon.logs.filter((l) => /^reconciliation removed/.test(l.msg)),
    [],
  );
  const list = await run(second.configFile, 'list', '--json');
  assert.equal(list.code, 0, list.stderr);
  const rows = (JSON.parse(list.stdout) as Array<{ address: string; reason: string; note?: string }>)
    .filter((r) => !r.address.startsWith('192.0.2.'))
    .sort((a, b) => a.address.localeCompare(b.address));
  assert.deepEqual(
    rows.map((r) => `${r.address} ${r.reason} ${r.note ?? ''}`),
    ['198.51.100.9 manual by hand', '203.0.113.0/24 manual '],
  );
  const show = await run(second.configFile, 'show', '203.0.113.5');
  assert.equal(show.code, 0, show.stderr);
  assert.match(
    show.stdout,
    /^203\.0\.113\.5\n {2}banned: {4}yes, by the network ban 203\.0\.113\.0\/24 \(manual, by test-node, [0-9hm]+ left\)\n/,
  );
  const un = await run(second.configFile, 'unban', '203.0.113.5');
  assert.equal(un.code, 0, un.stderr);
  assert.match(un.stdout, /covered by the network ban 203\.0\.113\.0\/24 .*ami-guard unban 203\.0\.113\.0\/24\n$/);
  assert.ok((await second.elements()).includes('203.0.113.0/24'), 'the network ban stays');
});
