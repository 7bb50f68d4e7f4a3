// Logs and printed URLs: credentials hidden wherever they sit in a URL, one event per line on a terminal, and no
// control character from outside text reaching a terminal raw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { escapeControl, prettyStream, redactUrl } from '../../src/log.js';

test('redactUrl hides a password in the userinfo and in the query, and keeps the rest', () => {
  assert.equal(redactUrl('redis://admin:s3cr3t@10.0.0.5:6379/0'), 'redis://admin:***@10.0.0.5:6379/0');
  assert.equal(redactUrl('redis://10.0.0.5:6379/0?password=s3cr3t'), 'redis://10.0.0.5:6379/0?password=***');
  assert.equal(
    redactUrl('rediss://h:6380/1?db=2&sentinelPassword=s3cr3t&family=6'),
    'rediss://h:6380/1?db=2&sentinelPassword=***&family=6',
  );
  assert.equal(redactUrl('redis://u:a@h/0?password=b&password=c'), 'redis://u:***@h/0?password=***');
  assert.equal(redactUrl('redis://h:6379'), 'redis://h:6379');
  assert.equal(redactUrl('not a url s3cr3t'), '[unparsable url]');
  assert.equal(redactUrl(''), '');
});

test('escapeControl: C0, DEL, C1 and bidi controls become \\u escapes; other text is kept', () => {
  assert.equal(escapeControl('a\u001b[31mb\r\nc\u007f\u009b\u202e'), 'a\\u001b[31mb\\u000d\\u000ac\\u007f\\u009b\\u202e');
  assert.equal(escapeControl('pbx-1 ß 東京 198.18.0.11'), 'pbx-1 ß 東京 198.18.0.11');
});

test('the terminal format puts one ban on one line, its message escaped', async () => {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => (text += d.toString()));
  const logger = pino({ base: { name: 'ami-guard' } }, prettyStream(false, out));
  logger.info(
    {
      event: 'ban',
      address: '198.18.0.11',
      reason: 'failures',
      count: 5,
      kinds: { ChallengeResponseFailed: 5, FailedACL: 1 },
      duration: '1h',
      until: '2026-11-21T21:36:37.387Z',
      previousBans: 0,
      by: 'pbx\u001b]0;owned\u0007',
    },
    'ban 198.18.0.11 \u001b[2J',
  );
  await new Promise((r) => setImmediate(r));
  const lines = text.split('\n').filter((l) => l);
  assert.equal(lines.length, 1, text);
  assert.match(
    lines[0]!,
    /INFO: ban 198\.18\.0\.11 \\u001b\[2J \{"event":"ban",.*"kinds":\{"ChallengeResponseFailed":5,"FailedACL":1\},"duration":"1h"/,
  );
  assert.ok(!/[\u0000-\u0009\u000b-\u001f]/.test(text), JSON.stringify(text));
});
