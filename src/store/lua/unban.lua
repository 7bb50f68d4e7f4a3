-- Lifts a ban and resets the failure and challenge windows (a subnet's count of member bans) in one step; the
-- history stays (recidive reads it), and so does the trust.
--
-- KEYS[1] the target's record   KEYS[2] its bucket's part of the ban index
-- ARGV[1] key base `<prefix>{<tag>}`   ARGV[2] target   ARGV[3] now (ms)   ARGV[4] window epoch length (ms)
--
-- Returns 1 if a ban was in force, 0 otherwise.

local rec = readString(KEYS[1])
local existed = 0
if rec then
  local r = recParse(rec)
  local u = n36(r.u)
  if u and u > tonumber(ARGV[3]) then existed = 1 end
  -- a subnet's count of its members' bans starts afresh too, as an address's window does
  r.u, r.a, r.r, r.c, r.f, r.l, r.k, r.n, r.p, r.x, r.o, r.m, r.s = nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil
  local rest = recBuild(r)
  if rest == '' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], rest, 'KEEPTTL')
  end
end
local epoch = windowEpoch(tonumber(ARGV[4]))
redis.call('HDEL', ARGV[1] .. 'w' .. epoch, ARGV[2])
redis.call('HDEL', ARGV[1] .. 'w' .. (epoch - 1), ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
return existed
