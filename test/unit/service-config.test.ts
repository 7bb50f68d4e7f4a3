// The http.* and notify.* fields: defaults, what the environment can carry, and errors that never echo a webhook URL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config/load.js';

test('http and notify defaults: listener on loopback port 9538, no webhook', () => {
  const c = loadConfig({ env: {} });
  assert.deepEqual(c.http, { host: '127.0.0.1', port: 9538 });
  assert.deepEqual(c.notify.webhook, { url: '', timeout: 5_000, retries: 3, queue: 1000 });
});

test('the environment sets them, port 0 and retries 0 included', () => {
  const c = loadConfig({
    env: {
      AMI_GUARD_HTTP_HOST: '::1',
      AMI_GUARD_HTTP_PORT: '0',
      AMI_GUARD_NOTIFY_WEBHOOK_URL: 'https://u:tok@hooks.example/x?k=1',
      AMI_GUARD_NOTIFY_WEBHOOK_TIMEOUT: '2s',
      AMI_GUARD_NOTIFY_WEBHOOK_RETRIES: '0',
      AMI_GUARD_NOTIFY_WEBHOOK_QUEUE: '10',
    },
  });
  assert.deepEqual(c.http, { host: '::1', port: 0 });
  assert.deepEqual(c.notify.webhook, { url: 'https://u:tok@hooks.example/x?k=1', timeout: 2_000, retries: 0, queue: 10 });
});

test('bad values name the field and never show the webhook URL', () => {
  const cases: Array<[NodeJS.ProcessEnv, RegExp]> = [
    [{ AMI_GUARD_HTTP_HOST: 'localhost' }, /http\.host: must be an IPv4 or IPv6 address/],
    [{ AMI_GUARD_HTTP_PORT: '70000' }, /http\.port/],
    [{ AMI_GUARD_NOTIFY_WEBHOOK_URL: 'ftp://u:tok3n@host/s3cret' }, /notify\.webhook\.url: must use http:\/\/ or https:\/\//],
    [{ AMI_GUARD_NOTIFY_WEBHOOK_URL: 'tok3n-s3cret' }, /notify\.webhook\.url: is not a valid URL/],
    [{ AMI_GUARD_NOTIFY_WEBHOOK_RETRIES: '-1' }, /notify\.webhook\.retries/],
    [{ AMI_GUARD_NOTIFY_WEBHOOK_QUEUE: '0' }, /notify\.webhook\.queue/],
  ];
  for (const [env, re] of cases) {
    assert.throws(
      () => loadConfig({ env }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, re);
        assert.doesNotMatch(err.message, /tok3n|s3cret/);
        return true;
      },
    );
  }
});
