-- Records one failure event for one address and decides, atomically: counted, banned now, or already banned.
-- Window maths use ARGV now (the caller's clock); key lifetimes use relative PEXPIRE durations.
--
-- KEYS[1] fail  LIST of `<ms>|<kind>|<account>`, newest first, at most maxretry entries
-- KEYS[2] ban   HASH reason kinds count first last at until node prev
-- KEYS[3] hist  LIST of JSON {at, until, reason, node}, newest first
-- ARGV[1] now (ms)            ARGV[2] kind (no `|`)       ARGV[3] account (capped, data only)
-- ARGV[4] weight (>= 1)       ARGV[5] maxretry            ARGV[6] findtime (ms)
-- ARGV[7] bantime (ms)        ARGV[8] until (now + bantime, ms)
-- ARGV[9] history ttl (ms)    ARGV[10] history cap        ARGV[11] node id
--
-- Returns one of
--   {'already-banned', until}
--   {'counted', count}
--   {'banned', count, kindsJson, first, last, prev}

local now = tonumber(ARGV[1])

local banUntil = redis.call('HGET', KEYS[2], 'until')
if banUntil then
  if (tonumber(banUntil) or 0) > now then return {'already-banned', banUntil} end
  -- over by the caller's clock though Redis has not expired it yet (clock skew): the address is free again
  redis.call('DEL', KEYS[2])
end

local maxretry = tonumber(ARGV[5])
local entry = ARGV[1] .. '|' .. ARGV[2] .. '|' .. ARGV[3]
local batch = {}
for i = 1, math.min(tonumber(ARGV[4]), maxretry) do batch[i] = entry end
if redis.call('LPUSH', KEYS[1], unpack(batch)) > maxretry then
  redis.call('LTRIM', KEYS[1], 0, maxretry - 1)
end

-- entries can be out of order when several nodes with skewed clocks share an address, so look at all of them
local cutoff = now - tonumber(ARGV[6])
local counted = {}
for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if tonumber(string.match(e, '^%d+')) > cutoff then counted[#counted + 1] = e end
end
local count = #counted
if count < maxretry then
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return {'counted', count}
end

local kinds = {}
local first, last, firstMs, lastMs
for _, e in ipairs(counted) do
  local at, kind = string.match(e, '^(%d+)|([^|]*)|')
  local ms = tonumber(at)
  kinds[kind] = (kinds[kind] or 0) + 1
  if not firstMs or ms < firstMs then firstMs, first = ms, at end
  if not lastMs or ms > lastMs then lastMs, last = ms, at end
end

local kindsJson = cjson.encode(kinds)
local prev = redis.call('LLEN', KEYS[3])
redis.call('HSET', KEYS[2], 'reason', 'failures', 'kinds', kindsJson, 'count', count, 'first', first, 'last', last,
  'at', ARGV[1], 'until', ARGV[8], 'node', ARGV[11], 'prev', prev)
redis.call('PEXPIRE', KEYS[2], ARGV[7])
-- the window starts afresh once the ban is over
redis.call('DEL', KEYS[1])
redis.call('LPUSH', KEYS[3],
  '{"at":' .. ARGV[1] .. ',"until":' .. ARGV[8] .. ',"reason":"failures","node":' .. cjson.encode(ARGV[11]) .. '}')
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[10]) - 1)
redis.call('PEXPIRE', KEYS[3], ARGV[9])
return {'banned', count, kindsJson, first, last, prev}
