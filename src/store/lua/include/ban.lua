-- Shared by the scripts that can decide a ban (prepended to them when they are loaded: Lua in Redis has no
-- require). How long a ban lasts and whether it is a recidive ban depend only on the address's history, so they
-- are decided here, inside the same atomic call that decided the ban.
--
-- A ban block of ARGV, starting at index `at`:
--   +0 bantime (ms)   +1 factor   +2 maxtime (ms)   +3 jitter (ms, drawn by the caller in [0, rndtime])
--   +4 recidive maxretry   +5 recidive findtime (ms)   +6 recidive bantime (ms)
--   +7 history ttl (ms)    +8 history cap               +9 node id

-- The address's ban, if one is in force by the caller's clock; one over by that clock though Redis has not expired
-- it yet (clock skew between nodes) is removed, and the address is free again.
local function amiGuardActiveBan(banKey, now)
  local banUntil = redis.call('HGET', banKey, 'until')
  if not banUntil then return nil end
  if (tonumber(banUntil) or 0) > now then return banUntil end
  redis.call('DEL', banKey)
  return nil
end

local function amiGuardBanParams(at)
  return {
    bantime = tonumber(ARGV[at]), factor = tonumber(ARGV[at + 1]), maxtime = tonumber(ARGV[at + 2]),
    jitter = tonumber(ARGV[at + 3]), recidiveMaxretry = tonumber(ARGV[at + 4]),
    recidiveFindtime = tonumber(ARGV[at + 5]), recidiveBantime = tonumber(ARGV[at + 6]),
    historyTtl = ARGV[at + 7], historyCap = tonumber(ARGV[at + 8]), node = ARGV[at + 9],
  }
end

-- fail2ban's bantime.increment: bantime x factor^(earlier bans), capped; and its recidive jail: the
-- recidive.maxretry-th ban within recidive.findtime gets the long ban.
local function amiGuardBanDuration(histKey, now, p)
  local history = redis.call('LRANGE', histKey, 0, -1)
  local earlier = #history
  local duration = p.bantime * (p.factor ^ earlier)
  if duration > p.maxtime then duration = p.maxtime end
  duration = math.floor(duration + p.jitter)
  local recent = 0
  local cutoff = now - p.recidiveFindtime
  for _, entry in ipairs(history) do
    local at = tonumber(string.match(entry, '"at":(%d+)'))
    if at and at > cutoff then recent = recent + 1 end
  end
  local recidive = recent + 1 >= p.recidiveMaxretry
  if recidive and p.recidiveBantime > duration then duration = p.recidiveBantime end
  return duration, recidive, earlier
end

-- Writes the ban record and its history entry; returns until (ms) as a string.
local function amiGuardWriteBan(banKey, histKey, now, reason, kindsJson, count, first, last, duration, earlier, p)
  local untilMs = string.format('%.0f', now + duration)
  local nowMs = string.format('%.0f', now)
  redis.call('HSET', banKey, 'reason', reason, 'kinds', kindsJson, 'count', count, 'first', first, 'last', last,
    'at', nowMs, 'until', untilMs, 'node', p.node, 'prev', earlier)
  redis.call('PEXPIRE', banKey, string.format('%.0f', duration))
  redis.call('LPUSH', histKey, '{"at":' .. nowMs .. ',"until":' .. untilMs .. ',"reason":' .. cjson.encode(reason) ..
    ',"node":' .. cjson.encode(p.node) .. '}')
  redis.call('LTRIM', histKey, 0, p.historyCap - 1)
  redis.call('PEXPIRE', histKey, p.historyTtl)
  return untilMs
end
