-- Writes back a ban this node decided on its local fallback store while Redis was unreachable, so the fleet sees it
-- and its history counts for escalation and recidive. Safe to run twice (a write-back whose reply was lost is
-- retried): a ban already in Redis lasting at least as long covers it, and then neither the record nor the history
-- changes. A shorter one (made by another node during the outage) is replaced, as the kernel enforces the longer.
--
-- KEYS[1] ban   HASH reason kinds count first last at until node prev
-- KEYS[2] hist  LIST of JSON {at, until, reason, node}, newest first
-- ARGV[1] now (ms)        ARGV[2] until (ms)      ARGV[3] banned at (ms)   ARGV[4] reason   ARGV[5] kinds (JSON)
-- ARGV[6] count           ARGV[7] first (ms)      ARGV[8] last (ms)        ARGV[9] node id
-- ARGV[10] history ttl (ms)   ARGV[11] history cap
--
-- Returns {1, until} when written, {0, until of the ban in force} when covered, {0, 0} when it is over. The caller
-- indexes the ban in force either way: a covering ban may have been written by a script whose reply was lost (a
-- paused Redis that ran the commands after the client had timed out), and then nobody indexed it.

local now = tonumber(ARGV[1])
local untilMs = tonumber(ARGV[2])
if untilMs <= now then return {0, 0} end
local existingText = redis.call('HGET', KEYS[1], 'until')
local existing = tonumber(existingText or '0') or 0
if existing >= untilMs then return {0, existingText} end

local prev = redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'reason', ARGV[4], 'kinds', ARGV[5], 'count', ARGV[6], 'first', ARGV[7], 'last', ARGV[8],
  'at', ARGV[3], 'until', ARGV[2], 'node', ARGV[9], 'prev', prev)
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', untilMs - now))
redis.call('LPUSH', KEYS[2],
  '{"at":' .. ARGV[3] .. ',"until":' .. ARGV[2] .. ',"reason":' .. cjson.encode(ARGV[4]) ..
  ',"node":' .. cjson.encode(ARGV[9]) .. '}')
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[11]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[10])
return {1, ARGV[2]}
