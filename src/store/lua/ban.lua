-- Writes a ban decided outside the failure counter (operator, later rules), replacing any ban of the target, and
-- appends it to the target's history. The failure window starts afresh, as after a threshold ban.
--
-- KEYS[1] ban   HASH reason kinds count first last at until node prev
-- KEYS[2] hist  LIST of JSON {at, until, reason, node}, newest first
-- KEYS[3] fail  LIST of recent failures (deleted)
-- ARGV[1] now (ms)             ARGV[2] until (ms)       ARGV[3] duration (ms, = until - now)
-- ARGV[4] reason               ARGV[5] node id
-- ARGV[6] history ttl (ms)     ARGV[7] history cap      ARGV[8] note (may be empty)
--
-- Returns prev: the number of history entries before this ban.

local prev = redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[1], 'reason', ARGV[4], 'kinds', '{}', 'count', 0, 'first', ARGV[1], 'last', ARGV[1],
  'at', ARGV[1], 'until', ARGV[2], 'node', ARGV[5], 'prev', prev)
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'note', ARGV[8]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('LPUSH', KEYS[2],
  '{"at":' .. ARGV[1] .. ',"until":' .. ARGV[2] .. ',"reason":' .. cjson.encode(ARGV[4]) ..
  ',"node":' .. cjson.encode(ARGV[5]) .. '}')
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[7]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return prev
