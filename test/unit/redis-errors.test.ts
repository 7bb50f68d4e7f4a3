// Why Redis cannot be used, in the project's words: the library's "no connection" replaced by what the connection
// last met, the system's error codes and Redis's refusals in plain words, anything else kept to one bounded line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RedisUnreachableError, redisCause } from '../../src/store/redis-errors.js';

function sysError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

test('the library\'s "max retries per request" names the cause its connection met, never itself', () => {
  const maxRetries = Object.assign(
    new Error('Reached the max retries per request limit (which is 1). Refer to "maxRetriesPerRequest" option for details.'),
    { name: 'MaxRetriesPerRequestError' },
  );
  assert.equal(redisCause(maxRetries, sysError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:6379')), 'connection refused');
  assert.equal(
    redisCause(maxRetries, new Error('self-signed certificate in certificate chain')),
    'self-signed certificate in certificate chain',
  );
  assert.equal(redisCause(maxRetries), 'no connection');
  assert.equal(redisCause(new Error('Connection is closed.'), sysError('EHOSTUNREACH', 'connect EHOSTUNREACH')), 'host unreachable');
  assert.equal(redisCause(new Error("Stream isn't writeable and enableOfflineQueue options is false")), 'no connection');
});

test('system errors, timeouts and refusals in plain words; anything else as one bounded line', () => {
  assert.equal(redisCause(sysError('ETIMEDOUT', 'connect ETIMEDOUT')), 'connection timed out');
  assert.equal(redisCause(sysError('ENOTFOUND', 'getaddrinfo ENOTFOUND redis.example')), 'host name not found');
  assert.equal(redisCause(new Error('Command timed out')), 'no answer in time (a hung or paused server?)');
  assert.equal(
    redisCause(new Error('WRONGPASS invalid username-password pair or user is disabled.')),
    'authentication refused (check the Redis user and password)',
  );
  assert.equal(redisCause(new Error('LOADING Redis is loading the dataset in memory')), 'it is loading its data set');
  assert.equal(redisCause(new Error(`first line\nsecond line ${'x'.repeat(300)}`)), 'first line');
  assert.equal(redisCause(new Error('y'.repeat(300))).length, 201);
  assert.equal(redisCause('a string'), 'a string');
  assert.equal(
    new RedisUnreachableError('redis://h:6379', 'connection refused').message,
    'Redis at redis://h:6379 is unreachable: connection refused',
  );
});
