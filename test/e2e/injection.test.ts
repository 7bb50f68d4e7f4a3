// Attacker text where Asterisk copies SIP into security events (AccountID is the From user, SessionID the Call-ID)
// crafted as nft and Redis syntax. It must change nothing but the counters: an operator's table stays byte for byte,
// ours stays in place, the attacker is banned after exactly maxretry events, and the text reaches neither the
// ruleset nor any Redis key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { startBed, markerEvents, MARKER } from '../support/bed.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { bannedInKernel, played } from '../support/bed-wait.js';

const ATTACKER = '198.51.100.23';
const SECOND_MARKER = '192.0.2.251';
const ACCOUNT = '6001"; flush ruleset; "';
const SESSION = '} ; delete table inet ami_guard ;';
const OPERATOR_TABLES = `table inet operator {
  set trusted { type ipv4_addr; flags interval; elements = { 192.0.2.0/24, 198.18.0.0/15 } }
  chain input {
    type filter hook input priority filter; policy accept;
    ip saddr @trusted accept
    tcp dport 22 counter accept comment "ssh"
  }
}
table ip legacy {
  chain forward { type filter hook forward priority 0; policy drop; }
}
`;

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

/** The n-th guess: a new request each time, a few ms after the last (the same session at the same time is one). */
function hostileEvent(n: number): string {
  return (
    [
      'Event: InvalidAccountID',
      'Privilege: security,all',
      `EventTV: 2026-11-21T19:25:18.${100 + n}+0000`,
      'Severity: Error',
      'Service: PJSIP',
      'EventVersion: 1',
      `AccountID: ${ACCOUNT}`,
      `SessionID: ${SESSION}`,
      'LocalAddress: IPV4/UDP/198.18.0.1/5060',
      `RemoteAddress: IPV4/UDP/${ATTACKER}/5060`,
    ].join('\r\n') + '\r\n\r\n'
  );
}

async function allKeys(url: string): Promise<string[]> {
  const client = new Redis(url);
  try {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await client.scan(cursor, 'COUNT', 1000);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== '0');
    return keys;
  } finally {
    client.disconnect();
  }
}

test('nft and Redis syntax in AccountID and SessionID changes nothing but the counters', async (t) => {
  const bed = await startBed({ cleanup: (fn) => t.after(fn), recording: 'legit-phone', redisUrl: redis.url, keyPrefix: 'inj:' });
  await played(bed);
  await bed.ns.nft(OPERATOR_TABLES);
  const operator = async (): Promise<string> =>
    (await bed.ns.execOk('nft', ['-a', 'list', 'table', 'inet', 'operator'])) +
    (await bed.ns.execOk('nft', ['-a', 'list', 'table', 'ip', 'legacy']));
  const operatorBefore = await operator();

  // maxretry - 1 of them: counted, not banned (the marker's ban says they have all been handled)
  for (let i = 0; i < 4; i++) bed.replay.inject(hostileEvent(i));
  bed.replay.inject(markerEvents(5, MARKER));
  await bannedInKernel(bed, MARKER, 20_000);
  assert.ok(!(await bed.elements()).includes(ATTACKER), 'banned before maxretry');
  assert.ok(await bed.firewall.present());

  bed.replay.inject(hostileEvent(4));
  bed.replay.inject(markerEvents(5, SECOND_MARKER));
  await bannedInKernel(bed, SECOND_MARKER, 20_000);
  assert.deepEqual((await bed.elements()).sort(), [ATTACKER, MARKER, SECOND_MARKER].sort());
  const ban = bed.daemon.logs.find((l) => l.event === 'ban' && l.address === ATTACKER);
  assert.ok(ban);
  assert.equal(ban.count, 5);
  assert.deepEqual(ban.kinds, { InvalidAccountID: 5 });

  assert.equal(await operator(), operatorBefore, "the operator's tables are byte for byte as they were");
  assert.ok(await bed.firewall.present(), 'our table, sets and drop chain are in place');
  const ruleset = await bed.ns.execOk('nft', ['list', 'ruleset']);
  for (const text of [ACCOUNT, SESSION, 'flush ruleset', 'delete table', '6001']) {
    assert.ok(!ruleset.includes(text), `the ruleset contains ${JSON.stringify(text)}`);
  }

  const keys = await allKeys(redis.url);
  assert.ok(
    keys.some((k) => k.startsWith('inj:') && k.includes(ATTACKER)),
    'the attacker has keys of its own',
  );
  for (const key of keys) {
    for (const text of ['flush', 'delete', '"', ';', ' ', '6001']) assert.ok(!key.includes(text), `Redis key ${JSON.stringify(key)}`);
  }
  assert.equal(bed.daemon.child.exitCode, null, 'the daemon is still running');
});
