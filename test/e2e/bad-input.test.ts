// Hostile and broken AMI input: the daemon keeps running, bans nothing for it, and writes nothing unparsed into nft.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBed, markerEvents } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

let session = 0;

function securityEvent(fields: Record<string, string>): string {
  const base: Record<string, string> = {
    Event: 'InvalidPassword',
    Privilege: 'security,all',
    EventTV: '2026-11-21T19:25:18.477+0000',
    Severity: 'Error',
    Service: 'SIP',
    EventVersion: '2',
    AccountID: '6001',
    SessionID: `0x7f6bc5${(++session).toString(16).padStart(6, '0')}`,
    LocalAddress: 'IPV4/UDP/198.18.0.1/5060',
  };
  const all = { ...base, ...fields };
  return `${Object.entries(all)
    .filter(([, v]) => v !== '\u0000omit')
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n')}\r\n\r\n`;
}

test('malformed frames, missing and bogus addresses, a 1 MB header: nothing banned, daemon keeps going', async (t) => {
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', redisUrl: redis.url, keyPrefix: 'bad:' });
  await bed.replay.playDone;
  // an operator's own table in the same namespace must come out untouched
  await bed.ns.nft(
    'table ip operator {\n chain input {\n type filter hook input priority 0; policy accept;\n tcp dport 22 accept\n }\n}\n',
  );
  const operatorBefore = await bed.ns.execOk('nft', ['list', 'table', 'ip', 'operator']);

  const hostile: string[] = [];
  for (let i = 0; i < 6; i++) {
    hostile.push(securityEvent({ RemoteAddress: '\u0000omit' })); // no RemoteAddress
    hostile.push(securityEvent({ RemoteAddress: 'IPV4/UDP/999.1.1.1/5060' }));
    hostile.push(securityEvent({ RemoteAddress: 'IPV4/UDP/198.18.0.99; flush ruleset/5060' }));
    hostile.push(securityEvent({ RemoteAddress: 'IPV4/UDP/0.0.0.0/0' }));
    hostile.push(securityEvent({ RemoteAddress: 'IPV6/UDP/::ffff:127.0.0.1/5060' }));
    hostile.push(securityEvent({ RemoteAddress: 'IPV4/UDP/224.0.0.1/5060' }));
    hostile.push(securityEvent({ RemoteAddress: 'garbage' }));
    hostile.push('this is not AMI at all\r\nno colon here\r\n::::\r\n\r\n');
    hostile.push(securityEvent({ RemoteAddress: 'IPV4/UDP/198.18.0.98/5060', AccountID: 'x'.repeat(1024 * 1024) }));
    hostile.push(securityEvent({ RemoteAddress: 'IPV4/UDP/198.18.0.97/5060', Event: 'Invalid Password; drop' }));
  }
  for (const h of hostile) bed.replay.inject(h);

  // attacker-controlled AccountID on a real attacker: banned for the address, the text goes nowhere near nft
  for (let i = 0; i < 5; i++) {
    bed.replay.inject(securityEvent({ RemoteAddress: 'IPV4/UDP/198.51.100.7/5060', AccountID: '6001"; flush ruleset; "' }));
  }
  bed.replay.inject(markerEvents(5));
  const banned = (await bed.elements()).filter((a) => a !== '192.0.2.250');
  // the marker may not be in yet: settle waits for it, then we read again
  assert.ok(
    banned.every((a) => a === '198.51.100.7'),
    `unexpected bans: ${banned.join(', ')}`,
  );
  assert.deepEqual(await bed.settle(), ['198.51.100.7']);

  assert.equal(bed.daemon.child.exitCode, null, 'the daemon is still running');
  assert.equal(await bed.ns.execOk('nft', ['list', 'table', 'ip', 'operator']), operatorBefore);
  assert.ok(await bed.firewall.present());
  // six 1 MB events from a valid address: dropped as oversized, not counted
  assert.ok(!(await bed.elements()).includes('198.18.0.98'));
  assert.ok(!bed.daemon.output().includes('x'.repeat(100)), 'the 1 MB account id is not echoed into the logs');
});
