-- Shared by the scripts (prepended when they are loaded: Lua in Redis has no require). The target's record and the
-- ban rules: how long a ban lasts and whether it is a recidive ban depend only on the target's history, so they are
-- decided inside the same atomic call that decides the ban.
--
-- A record is one STRING of `<letter>=<value>` fields separated by `;` (docs/fleet.md):
--   u until of the ban in force (base 36 ms; absent: none)   a banned at   r reason (percent-encoded)
--   c failures counted   f first   l last   k kind codes of those failures   n node   p earlier bans
--   x account id of the last failure (percent-encoded)   o the operator's note (percent-encoded)
--   t trusted until (base 36 ms); for a network or subnet: until when it holds a trusted address
--   m a subnet ban's members: the addresses or prefixes whose bans led to it, joined by `,`
--   s a subnet's recent member bans (subnet escalation): `<at>@<member>` joined by `,`, oldest first
--   h history, newest first: `<at>:<until>:<reason>:<node>` joined by `,`
-- Times are ms since the epoch in base 36. Values never contain `;`, `=` or `,` unless said (the caller encodes
-- free text), so a record written by someone else can be garbage but never splits wrongly.

local DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'

local function b36(n)
  n = math.floor(n)
  if n <= 0 then return '0' end
  local s = ''
  while n > 0 do
    local d = n % 36
    s = string.sub(DIGITS, d + 1, d + 1) .. s
    n = (n - d) / 36
  end
  return s
end

-- a base-36 time, or nil for anything else (a record is data: it may hold garbage)
local function n36(s)
  if not s or s == '' then return nil end
  return tonumber(s, 36)
end

-- A key of ours that holds another type (written by someone else) would stop every call that reaches it: it is
-- dropped, which the server's log says, and reads as absent.
local function dropWrongType(reply, key)
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, 'WRONGTYPE', 1, true) then error(reply.err) end
    redis.log(redis.LOG_WARNING, 'ami-guard: deleted ' .. key .. ', which held a value of the wrong type')
    redis.call('DEL', key)
    return false
  end
  return reply
end

local function readString(key)
  return dropWrongType(redis.pcall('GET', key), key)
end

local function readField(key, field)
  return dropWrongType(redis.pcall('HGET', key, field), key)
end

local REC_ORDER = {'u', 'a', 'r', 'c', 'f', 'l', 'k', 'n', 'p', 'x', 'o', 'm', 't', 's', 'h'}

local function recParse(s)
  local r = {}
  if s then
    for k, v in string.gmatch(s, '(%a)=([^;]*)') do r[k] = v end
  end
  return r
end

local function recBuild(r)
  local parts = {}
  for _, k in ipairs(REC_ORDER) do
    local v = r[k]
    if v and v ~= '' then parts[#parts + 1] = k .. '=' .. v end
  end
  return table.concat(parts, ';')
end

-- Writes a record that holds no new ban: one that existed keeps its TTL (it may live for its history or a ban),
-- extended to at least `ttl` (GT only ever extends; NX gives a key without one its first); a new one lives `ttl`.
local function writeRecord(key, r, existed, ttl)
  if existed then
    redis.call('SET', key, recBuild(r), 'KEEPTTL')
    if redis.call('PEXPIRE', key, ttl, 'GT') == 0 then redis.call('PEXPIRE', key, ttl, 'NX') end
  else
    redis.call('SET', key, recBuild(r), 'PX', ttl)
  end
end

-- the history's entries, newest first
local function histList(h)
  local list = {}
  if h then
    for e in string.gmatch(h, '[^,]+') do list[#list + 1] = e end
  end
  return list
end

-- The ban rule block of ARGV, starting at index `at`:
--   +0 bantime (ms)   +1 factor   +2 maxtime (ms)   +3 rndtime (ms)   +4 jitter seed
--   +5 recidive maxretry   +6 recidive findtime (ms)   +7 recidive bantime (ms)
--   +8 history ttl (ms)    +9 history cap               +10 node id
local function banParams(at)
  return {
    bantime = tonumber(ARGV[at]), factor = tonumber(ARGV[at + 1]), maxtime = tonumber(ARGV[at + 2]),
    rndtime = tonumber(ARGV[at + 3]), seed = tonumber(ARGV[at + 4]),
    recidiveMaxretry = tonumber(ARGV[at + 5]), recidiveFindtime = tonumber(ARGV[at + 6]),
    recidiveBantime = tonumber(ARGV[at + 7]), historyTtl = tonumber(ARGV[at + 8]), historyCap = tonumber(ARGV[at + 9]),
    node = ARGV[at + 10],
  }
end

-- fail2ban's bantime.rndtime: a draw per ban from a generator seeded by the caller, so the script stays
-- deterministic (what Redis replicates is its effects anyway) and two bans of one batch differ
local function jitter(p)
  if p.rndtime <= 0 then return 0 end
  p.seed = (p.seed * 1103515245 + 12345) % 2147483648
  return p.seed % (p.rndtime + 1)
end

-- fail2ban's bantime.increment: bantime x factor^(earlier bans), capped; and its recidive jail: the
-- recidive.maxretry-th ban within recidive.findtime gets the long ban.
local function banDuration(hist, now, p)
  local earlier = #hist
  local duration = p.bantime * (p.factor ^ earlier)
  if duration > p.maxtime then duration = p.maxtime end
  duration = math.floor(duration + jitter(p))
  local recent = 0
  local cutoff = now - p.recidiveFindtime
  for _, e in ipairs(hist) do
    local at = n36(string.match(e, '^([%l%d]+):'))
    if at and at > cutoff then recent = recent + 1 end
  end
  local recidive = recent + 1 >= p.recidiveMaxretry
  if recidive and p.recidiveBantime > duration then duration = p.recidiveBantime end
  return duration, recidive, earlier
end

-- Puts a new ban, made at `at36`, into the record `r` (parsed) with its history entry; returns the record's TTL
-- (ms from `now`): the ban, the history and the trust all live as long as their longest part.
local function putBan(r, hist, at36, now, untilMs, until36, reason, p)
  local entry = at36 .. ':' .. until36 .. ':' .. reason .. ':' .. p.node
  local keep = {entry}
  for i = 1, math.min(#hist, p.historyCap - 1) do keep[#keep + 1] = hist[i] end
  r.u, r.a, r.r, r.n, r.p, r.h = until36, at36, reason, p.node, tostring(#hist), table.concat(keep, ',')
  local ttl = math.max(untilMs - now, p.historyTtl)
  local trusted = n36(r.t)
  if trusted and trusted - now > ttl then ttl = trusted - now end
  return math.floor(ttl)
end

-- Adds a ban to its bucket's part of the index. The TTL (the longest ban in it) is set by indexExpire once per key.
local function indexBan(indexTtl, key, untilMs, target, durationMs)
  if dropWrongType(redis.pcall('ZADD', key, untilMs, target), key) == false then redis.call('ZADD', key, untilMs, target) end
  if (indexTtl[key] or 0) < durationMs then indexTtl[key] = durationMs end
end

local function indexExpire(indexTtl)
  for key, ms in pairs(indexTtl) do
    -- GT extends an existing TTL and never shortens it; NX gives a new key its first one
    if redis.call('PEXPIRE', key, ms, 'GT') == 0 then redis.call('PEXPIRE', key, ms, 'NX') end
  end
end

-- The epoch of the failure windows by the server's clock, so every node of a fleet writes the same key whatever its
-- own clock says; the windows' contents use the caller's clock.
local function windowEpoch(epochMs)
  local t = redis.call('TIME')
  local serverNow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local epoch = math.floor(serverNow / epochMs)
  return epoch, (epoch + 2) * epochMs - serverNow
end
