// With redis.url empty the daemon still defends one PBX, from an in-process store, and says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBed } from '../support/bed.js';

test('no Redis: the embedded store bans the same attackers and warns that nothing is shared', async (t) => {
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'chansip-register-bruteforce' });
  assert.deepEqual(await bed.settle(), ['198.18.0.11']);
  const warn = bed.daemon.logs.find((l) => l.level === 40 && /embedded/.test(l.msg));
  assert.ok(warn, 'a warning names the embedded store');
  assert.match(warn.msg, /nothing is shared/);
});

test('no Redis: the legitimate chan_sip phone is not banned', async (t) => {
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'chansip-legit-phone' });
  assert.deepEqual(await bed.settle(), []);
});
