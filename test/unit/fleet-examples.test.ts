// The fleet's compose examples (docs/deployment.md): valid for docker-compose, and naming only variables the daemon reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { parse } from 'yaml';
import { envVars } from '../../src/config/load.js';

const FILES = ['examples/fleet/pbx1.docker-compose.yml', 'examples/fleet/pbx2.docker-compose.yml'];
const ENV = { ...process.env, AMI_GUARD_AMI_SECRET: 'x', AMI_GUARD_REDIS_PASSWORD: 'y', PBX1_ADDRESS: '10.0.0.1' };

for (const file of FILES) {
  test(`${file}: docker-compose accepts it`, () => {
    const r = spawnSync('docker-compose', ['-f', file, 'config', '-q'], { encoding: 'utf8', env: ENV });
    assert.ok(!r.error, 'docker-compose not found: apt-get install -y docker-compose');
    assert.equal(r.status, 0, r.stderr);
  });

  test(`${file}: a host-network sidecar with NET_ADMIN and known AMI_GUARD_* variables`, () => {
    const doc = parse(readFileSync(file, 'utf8')) as { services: Record<string, { environment?: Record<string, string>; cap_add?: string[]; network_mode?: string }> };
    const sidecar = doc.services['ami-guard'];
    assert.ok(sidecar);
    assert.equal(sidecar.network_mode, 'host');
    assert.deepEqual(sidecar.cap_add, ['NET_ADMIN']);
    const known = envVars();
    for (const name of Object.keys(sidecar.environment ?? {})) assert.ok(known.has(name), `${name} is not a configuration variable`);
    assert.match(sidecar.environment?.AMI_GUARD_REDIS_URL ?? '', /^redis:\/\//);
    assert.ok(sidecar.environment?.AMI_GUARD_NODE_ID);
  });
}
