-- Records a challenge sent to an address (ChallengeSent) and decides whether the address is a silent scanner:
-- one that collects challenges it never answers with a successful login (record-success.lua takes one back).
--
-- KEYS[1] chal  LIST of `<ms>`, newest first: challenges not (yet) followed by a SuccessfulAuth
-- KEYS[2] ban   HASH (as in record-failure.lua)
-- KEYS[3] hist  LIST (as in record-failure.lua)
-- ARGV[1] now (ms)   ARGV[2] scanner maxretry   ARGV[3] scanner findtime (ms)
-- ARGV[4..13] the ban block (include/ban.lua)
--
-- Returns {'already-banned', until} | {'counted', count, threshold} |
--         {'banned', count, kindsJson, first, last, prev, reason, until}

local now = tonumber(ARGV[1])
local banUntil = amiGuardActiveBan(KEYS[2], now)
if banUntil then return {'already-banned', banUntil} end

local maxretry = tonumber(ARGV[2])
if redis.call('LPUSH', KEYS[1], ARGV[1]) > maxretry then redis.call('LTRIM', KEYS[1], 0, maxretry - 1) end
local cutoff = now - tonumber(ARGV[3])
local count, firstMs, lastMs = 0, nil, nil
for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ms = tonumber(e)
  if ms and ms > cutoff then
    count = count + 1
    if not firstMs or ms < firstMs then firstMs = ms end
    if not lastMs or ms > lastMs then lastMs = ms end
  end
end
if count < maxretry then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'counted', count, maxretry}
end

local p = amiGuardBanParams(4)
local duration, recidive, earlier = amiGuardBanDuration(KEYS[3], now, p)
local reason = recidive and 'recidive' or 'scanner'
local kindsJson = cjson.encode({ ChallengeSent = count })
local first, last = string.format('%.0f', firstMs), string.format('%.0f', lastMs)
local untilMs = amiGuardWriteBan(KEYS[2], KEYS[3], now, reason, kindsJson, count, first, last, duration, earlier, p)
redis.call('DEL', KEYS[1])
return {'banned', count, kindsJson, first, last, earlier, reason, untilMs}
