-- Writes a pull's outcome into a feed's record, only while the caller still holds the pull lock: a node whose pull
-- outlived its lease (another node took the lock meanwhile) changes nothing. The lock then stays until the next
-- pull is due (the interval after a success, the backoff after a failure), which is what spaces pulls fleet-wide;
-- the record says when that is (`next`, from Redis's clock), for `status`.
--
-- KEYS[1] the feed's record (HASH), KEYS[2] its pull lock (STRING holding the holder's token)
-- ARGV[1] token, ARGV[2] ms until the next pull, ARGV[3] ms the record lives without a write,
-- ARGV[4] '1' when ARGV[5] holds new entries (the version moves on) or '0', ARGV[5] the packed entries,
-- ARGV[6..] field, value pairs (cursor, pull time, node, failures, error, …)
-- Returns the record's version, or -1 when the lock is not ours any more.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
local version = tonumber(redis.call('HGET', KEYS[1], 'v') or '0') or 0
if ARGV[4] == '1' then
  version = version + 1
  redis.call('HSET', KEYS[1], 'v', version, 'data', ARGV[5])
end
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'next', string.format('%.0f', now + tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return version
