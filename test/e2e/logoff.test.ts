// Stopping the daemon logs off from AMI. Asterisk answers the Logoff with `Response: Goodbye`, and a reply that is
// not matched to one of our actions reads as a forged one: part of an injection, blamed on the source of the event
// just before it. The Logoff carries an ActionID of ours, so its reply is ours and nobody is banned for a restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBed } from '../support/bed.js';
import { pjsipEvent } from '../support/ami-events.js';

test('a daemon that stops right after an event bans nobody for the reply to its Logoff', async (t) => {
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone' });
  await bed.settle();
  // the last message before the Logoff's reply (TCP keeps the order): a phone's successful login
  bed.replay.inject(pjsipEvent('SuccessfulAuth', { remote: '198.51.100.9' }));
  assert.equal(await bed.daemon.stop(), 0);
  const injections = bed.daemon.logs.filter((l) => l.event === 'injection');
  assert.deepEqual(injections, [], 'no injection seen at the Logoff');
  assert.ok(!(await bed.elements()).includes('198.51.100.9'), 'the phone is not banned');
});
