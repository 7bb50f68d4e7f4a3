// The start-up rehearsal of a ban: it runs the ban path on throwaway parts, and whether it reached a ban follows the
// running policy. That it leaves nothing in the kernel, the store or the log is checked end to end
// (test/e2e/enforcement.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config/load.js';
import { rehearseBan } from '../../src/daemon/rehearsal.js';
import { Policy } from '../../src/policy/policy.js';

function policy(env: NodeJS.ProcessEnv = {}): Policy {
  return new Policy(loadConfig({ env }).policy);
}

test('the rehearsal reaches a ban through the frame reader, the intake, the daemon, the store and the nft script', async () => {
  assert.equal((await rehearseBan(policy(), 'ami_guard')).banned, true);
  assert.equal((await rehearseBan(policy({ AMI_GUARD_POLICY_MAXRETRY: '2' }), 'ami_guard')).banned, true);
});

test('the rehearsal takes a documentation address the policy would ban', async () => {
  const r = await rehearseBan(policy({ AMI_GUARD_POLICY_IGNOREIP: '127.0.0.1,192.0.2.0/24' }), 'ami_guard');
  assert.equal(r.address.text, '198.51.100.1');
  assert.equal(r.banned, true);
});

test('a policy that would ban none of its addresses, or asks for too many failures, rehearses counting only', async () => {
  const ignoring = policy({ AMI_GUARD_POLICY_IGNOREIP: '127.0.0.1,192.0.2.0/24,198.51.100.0/24,203.0.113.0/24' });
  assert.equal((await rehearseBan(ignoring, 'ami_guard')).banned, false);
  assert.equal((await rehearseBan(policy({ AMI_GUARD_POLICY_MAXRETRY: '1000' }), 'ami_guard')).banned, false);
});
