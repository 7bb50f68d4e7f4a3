-- Writes a ban decided outside the failure counter (operator, later rules), replacing any ban of the target, and
-- appends it to the target's history; the target's trust stays. The failure window starts afresh, as after a
-- threshold ban. The record's fields are described in include/record.lua.
--
-- KEYS[1] the target's record   KEYS[2] its bucket's part of the ban index
-- ARGV[1] key base `<prefix>{<tag>}`   ARGV[2] target   ARGV[3] now (ms)   ARGV[4] until (ms)
-- ARGV[5] reason (percent-encoded)    ARGV[6] note (percent-encoded, may be empty)
-- ARGV[7] window epoch length (ms)    ARGV[8] node id   ARGV[9] history ttl (ms)   ARGV[10] history cap
--
-- Returns the number of history entries before this ban (a ban it replaces not counted).

local now, untilMs = tonumber(ARGV[3]), tonumber(ARGV[4])
local r = recParse(readString(KEYS[1]))
local hist = histList(r.h)
local p = { node = ARGV[8], historyTtl = tonumber(ARGV[9]), historyCap = tonumber(ARGV[10]) }
-- a ban of what is banned now replaces it: its history entry goes, so no second offence is made of one
local current = n36(r.u)
if current and current > now and r.a and hist[1] and string.sub(hist[1], 1, #r.a + #r.u + 2) == r.a .. ':' .. r.u .. ':' then
  table.remove(hist, 1)
end
r.c, r.f, r.l, r.k, r.x, r.m, r.s = '0', b36(now), b36(now), nil, nil, nil, nil
r.o = ARGV[6] ~= '' and ARGV[6] or nil
local ttl = putBan(r, hist, b36(now), now, untilMs, b36(untilMs), ARGV[5], p)
redis.call('SET', KEYS[1], recBuild(r), 'PX', ttl)
local epoch = windowEpoch(tonumber(ARGV[7]))
redis.call('HDEL', ARGV[1] .. 'w' .. epoch, ARGV[2])
redis.call('HDEL', ARGV[1] .. 'w' .. (epoch - 1), ARGV[2])
local indexTtl = {}
indexBan(indexTtl, KEYS[2], untilMs, ARGV[2], untilMs - now)
indexExpire(indexTtl)
return #hist
