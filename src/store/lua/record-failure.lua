-- Records one failure event for one address and decides, atomically: counted, banned now, or already banned.
-- Window maths use ARGV now (the caller's clock); key lifetimes use relative PEXPIRE durations.
--
-- KEYS[1] fail   LIST of `<ms>|<kind>|<account>`, newest first
-- KEYS[2] ban    HASH reason kinds count first last at until node prev
-- KEYS[3] hist   LIST of JSON {at, until, reason, node}, newest first
-- KEYS[4] trust  STRING, present while the address is trusted (a recent successful login)
-- ARGV[1] now (ms)            ARGV[2] kind (no `|`)         ARGV[3] account (capped, data only)
-- ARGV[4] weight (>= 1)       ARGV[5] maxretry              ARGV[6] findtime (ms)
-- ARGV[7] trust maxretry      ARGV[8] offender maxretry (an address with ban history)
-- ARGV[9..18] the ban block (include/ban.lua)
--
-- Returns one of
--   {'already-banned', until}
--   {'counted', count, threshold}
--   {'banned', count, kindsJson, first, last, prev, reason, until}

local now = tonumber(ARGV[1])

local banUntil = amiGuardActiveBan(KEYS[2], now)
if banUntil then return {'already-banned', banUntil} end

local maxretry = tonumber(ARGV[5])
local trustMaxretry = tonumber(ARGV[7])
-- a trusted address gets a higher threshold instead of immunity; a known offender a lower one
local threshold = maxretry
if redis.call('EXISTS', KEYS[4]) == 1 then
  threshold = trustMaxretry
elseif redis.call('EXISTS', KEYS[3]) == 1 then
  threshold = math.min(maxretry, tonumber(ARGV[8]))
end
local cap = math.max(maxretry, trustMaxretry)

local entry = ARGV[1] .. '|' .. ARGV[2] .. '|' .. ARGV[3]
local batch = {}
for i = 1, math.min(tonumber(ARGV[4]), cap) do batch[i] = entry end
if redis.call('LPUSH', KEYS[1], unpack(batch)) > cap then
  redis.call('LTRIM', KEYS[1], 0, cap - 1)
end

-- entries can be out of order when several nodes with skewed clocks share an address, so look at all of them
local cutoff = now - tonumber(ARGV[6])
local counted = {}
for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if tonumber(string.match(e, '^%d+')) > cutoff then counted[#counted + 1] = e end
end
local count = #counted
if count < threshold then
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return {'counted', count, threshold}
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

local p = amiGuardBanParams(9)
local duration, recidive, earlier = amiGuardBanDuration(KEYS[3], now, p)
local reason = recidive and 'recidive' or 'failures'
local kindsJson = cjson.encode(kinds)
local untilMs = amiGuardWriteBan(KEYS[2], KEYS[3], now, reason, kindsJson, count, first, last, duration, earlier, p)
-- the window starts afresh once the ban is over
redis.call('DEL', KEYS[1])
return {'banned', count, kindsJson, first, last, earlier, reason, untilMs}
