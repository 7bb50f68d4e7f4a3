// Scale: a plain list of 100,000 entries reaches the kernel whole, in batched nft transactions (never one command per
// address), and a later pull that drops some takes exactly those out. How long it takes is for `npm run bench -- feeds`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBed } from '../support/bed.js';
import { startFeedServer } from '../support/feed-server.js';
import { waitFor } from '../support/netns.js';

const N = 100_000;

/** 100,000 distinct hosts from 100.64.0.0 on (shared address space, RFC 6598) */
function host(i: number): string {
  const n = 0x64400000 + i;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

test('100,000 list entries all reach the kernel set; entries dropped from the list all leave it', async (t) => {
  const server = await startFeedServer();
  t.after(() => server.stop());
  const all = Array.from({ length: N }, (_, i) => host(i));
  server.setList('big', `# ${N} entries\n${all.join('\n')}\n`);
  const bed = await startBed({
    cleanup: (fn) => t.after(fn),
    recording: 'legit-phone',
    config: { blocklists: { lists: [{ name: 'big', url: server.listUrl('big'), interval: '2s' }] } },
  });
  const enforced = await bed.daemon.waitForLog((l) => l.msg === 'feed enforced' && l.entries === N, 120_000);
  assert.equal(enforced.added, N);
  const kernel = new Set(await bed.elements());
  const missing = all.filter((a) => !kernel.has(a));
  assert.deepEqual(missing.slice(0, 5), [], `${missing.length} entries missing from the kernel`);
  assert.equal(kernel.size, N);

  // every 10th entry dropped: the next pull takes exactly those out
  const kept = all.filter((_, i) => i % 10 !== 0);
  server.setList('big', `${kept.join('\n')}\n`);
  const shrunk = await bed.daemon.waitForLog((l) => l.msg === 'feed enforced' && l.entries === kept.length, 120_000);
  assert.deepEqual([shrunk.added, shrunk.removed], [0, N / 10]);
  const after = await waitFor(
    'the dropped entries gone',
    async () => {
      const els = await bed.elements();
      return els.length === kept.length ? els : undefined;
    },
    30_000,
  );
  assert.deepEqual(after.sort(), [...kept].sort());
});
