-- Writes back a ban this node decided on its local fallback store while Redis was unreachable, so the fleet sees it
-- and its history counts for escalation and recidive. Safe to run twice (a write-back whose reply was lost is
-- retried): a ban already in Redis lasting at least as long covers it, and then neither the record nor the history
-- changes. A shorter one (made by another node during the outage) is replaced, as the kernel enforces the longer.
--
-- KEYS[1] the target's record   KEYS[2] its bucket's part of the ban index
-- ARGV[1] key base `<prefix>{<tag>}`   ARGV[2] target   ARGV[3] now (ms)   ARGV[4] until (ms)   ARGV[5] banned at
-- ARGV[6] reason (percent-encoded)     ARGV[7] kind codes   ARGV[8] count   ARGV[9] first   ARGV[10] last (ms)
-- ARGV[11] node id of the ban         ARGV[12] history ttl (ms)   ARGV[13] history cap
-- ARGV[14] account (percent-encoded)  ARGV[15] note (percent-encoded)   ARGV[16] window epoch length (ms)
-- ARGV[17] '1': re-seeding (below)   ARGV[18] a subnet ban's members (`,`-separated canonical targets; may be empty)
--
-- Re-seeding a store that lost its data from the kernel sets (ARGV[17] '1') differs in one thing: a ban in force is
-- kept, only made to last until ARGV[4] when that is later, with no new history entry. Every node of a fleet re-seeds
-- the same bans with ends a second or so apart (kernel timeouts are whole seconds), and each must not add a ban to
-- the address's history, which escalation reads.
--
-- Returns {1, until} when written, {2, until} when a ban in force was extended, {0, until of the ban in force} when
-- covered, {0, 0} when it is over. The ban in force is indexed either way: a covering ban may have been written by a
-- script whose reply was lost (a paused Redis that ran the commands after the client had timed out), and then nobody
-- indexed it.

local now, untilMs = tonumber(ARGV[3]), tonumber(ARGV[4])
if untilMs <= now then return {0, 0} end
local r = recParse(readString(KEYS[1]))
local existing = n36(r.u) or 0
local indexTtl = {}
if existing >= untilMs then
  indexBan(indexTtl, KEYS[2], existing, ARGV[2], existing - now)
  indexExpire(indexTtl)
  return {0, string.format('%.0f', existing)}
end
if ARGV[17] == '1' and existing > now then
  r.u = b36(untilMs)
  redis.call('SET', KEYS[1], recBuild(r), 'KEEPTTL')
  redis.call('PEXPIRE', KEYS[1], math.floor(untilMs - now), 'GT')
  indexBan(indexTtl, KEYS[2], untilMs, ARGV[2], untilMs - now)
  indexExpire(indexTtl)
  return {2, ARGV[4]}
end

local hist = histList(r.h)
local p = { node = ARGV[11], historyTtl = tonumber(ARGV[12]), historyCap = tonumber(ARGV[13]) }
r.c, r.f, r.l, r.k = ARGV[8], b36(tonumber(ARGV[9])), b36(tonumber(ARGV[10])), ARGV[7]
r.x = ARGV[14] ~= '' and ARGV[14] or nil
r.o = ARGV[15] ~= '' and ARGV[15] or nil
r.m = ARGV[18] ~= '' and ARGV[18] or nil
r.s = nil
local ttl = putBan(r, hist, b36(tonumber(ARGV[5])), now, untilMs, b36(untilMs), ARGV[6], p)
redis.call('SET', KEYS[1], recBuild(r), 'PX', ttl)
local epoch = windowEpoch(tonumber(ARGV[16]))
redis.call('HDEL', ARGV[1] .. 'w' .. epoch, ARGV[2])
redis.call('HDEL', ARGV[1] .. 'w' .. (epoch - 1), ARGV[2])
indexBan(indexTtl, KEYS[2], untilMs, ARGV[2], untilMs - now)
indexExpire(indexTtl)
return {1, ARGV[4]}
