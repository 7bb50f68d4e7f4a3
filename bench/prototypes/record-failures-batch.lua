-- PROTOTYPE (bench only, not used by the daemon): src/store/lua/record-failure.lua for many events in one call.
-- Same keys, same entries, same decisions, same ban record and history; additionally writes the ban index (which
-- the daemon does from TypeScript with ZADD + 2 PEXPIRE after a ban) so a ban costs no second round trip. Touches
-- keys of many hash tags, so it runs on a standalone Redis (or per slot on a Cluster, grouping events by slot).
--
-- KEYS[1]            ban index ZSET
-- KEYS[3i-1 .. 3i+1] fail, ban, hist of event i (i = 1..n)
-- ARGV[1] maxretry   ARGV[2] findtime (ms)   ARGV[3] bantime (ms)   ARGV[4] history ttl (ms)
-- ARGV[5] history cap  ARGV[6] node id
-- ARGV[6+4(i-1)+1 .. +4] now, kind, account, weight of event i
--
-- Returns a flat array, 2 per event: {code, value} with code 0 counted (value = count), 1 banned (value = count),
-- 2 already banned (value = until).

local maxretry = tonumber(ARGV[1])
local findtime = tonumber(ARGV[2])
local bantime = tonumber(ARGV[3])
local histTtl = ARGV[4]
local histCap = tonumber(ARGV[5])
local node = ARGV[6]
local index = KEYS[1]
local n = (#KEYS - 1) / 3
local out = {}
local indexTouched = false

for i = 1, n do
  local kFail, kBan, kHist = KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1]
  local a = 6 + 4 * (i - 1)
  local nowS, kind, account, weight = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
  local now = tonumber(nowS)
  local done = false

  local banUntil = redis.call('HGET', kBan, 'until')
  if banUntil then
    if (tonumber(banUntil) or 0) > now then
      out[#out + 1] = 2
      out[#out + 1] = banUntil
      done = true
    else
      redis.call('DEL', kBan)
    end
  end

  if not done then
    local entry = nowS .. '|' .. kind .. '|' .. account
    local batch = {}
    for j = 1, math.min(weight, maxretry) do batch[j] = entry end
    if redis.call('LPUSH', kFail, unpack(batch)) > maxretry then
      redis.call('LTRIM', kFail, 0, maxretry - 1)
    end
    local cutoff = now - findtime
    local counted = {}
    for _, e in ipairs(redis.call('LRANGE', kFail, 0, -1)) do
      if tonumber(string.match(e, '^%d+')) > cutoff then counted[#counted + 1] = e end
    end
    local count = #counted
    if count < maxretry then
      redis.call('PEXPIRE', kFail, findtime)
      out[#out + 1] = 0
      out[#out + 1] = count
    else
      local kinds = {}
      local first, last, firstMs, lastMs
      for _, e in ipairs(counted) do
        local at, k = string.match(e, '^(%d+)|([^|]*)|')
        local ms = tonumber(at)
        kinds[k] = (kinds[k] or 0) + 1
        if not firstMs or ms < firstMs then firstMs, first = ms, at end
        if not lastMs or ms > lastMs then lastMs, last = ms, at end
      end
      local untilS = tostring(now + bantime)
      local prev = redis.call('LLEN', kHist)
      redis.call('HSET', kBan, 'reason', 'failures', 'kinds', cjson.encode(kinds), 'count', count, 'first', first,
        'last', last, 'at', nowS, 'until', untilS, 'node', node, 'prev', prev)
      redis.call('PEXPIRE', kBan, bantime)
      redis.call('DEL', kFail)
      redis.call('LPUSH', kHist,
        '{"at":' .. nowS .. ',"until":' .. untilS .. ',"reason":"failures","node":' .. cjson.encode(node) .. '}')
      redis.call('LTRIM', kHist, 0, histCap - 1)
      redis.call('PEXPIRE', kHist, histTtl)
      redis.call('ZADD', index, untilS, string.match(kBan, '{(.*)}'))
      indexTouched = true
      out[#out + 1] = 1
      out[#out + 1] = count
    end
  end
end
if indexTouched then
  redis.call('PEXPIRE', index, bantime, 'GT')
  redis.call('PEXPIRE', index, bantime, 'NX')
end
return out
