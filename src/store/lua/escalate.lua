-- What follows a batch's verdicts in other buckets than its targets' (Store.recordActivity, after
-- record-activity.lua): the ban of an address whose network holds a trusted address, and subnet escalation. Each
-- item touches one target's keys (its bucket's slot); on a Cluster the caller sends one call per node, as for
-- record-activity.lua, and an item whose slot moved is answered 'm' with nothing done.
--
-- KEYS[1]  any key of the call's node (routing only)
-- ARGV[1]  prefix            ARGV[2]  now (ms)            ARGV[3]  window epoch length (ms)
-- ARGV[4]  findtime (ms)     ARGV[5]  subnet maxbans      ARGV[6]  subnet bantime (ms)    ARGV[7] trust ttl (ms)
-- ARGV[8..18] the ban rule block (include/record.lua)     ARGV[19] now in base 36
-- ARGV[20..] one item each:
--   `a|<tag>|<address>|<reason>|<count>|<codes>|<first36>|<last36>|<account>`
--        ban the address, with the counts that crossed its network's threshold (escalated by its own history)
--   `t|<tag>|<subnet>`            the subnet holds an address trusted from now: it is never banned whole meanwhile
--   `s|<tag>|<subnet>|<member>`   `member` (an address or prefix of the subnet) was banned now
--
-- A subnet counts its members' bans in its record (`s`: `<at>@<member>`, distinct members, within findtime); the
-- maxbans-th bans the subnet for its bantime (reason `subnet`, `m` naming the members), unless the subnet holds a
-- trusted address (`t`) or is banned already.
--
-- Returns, for each item that did something to report (times in base 36):
--   <index>, 'b', <until>, <count>, <codes>, <first>, <last>, <prev>, <reason>, <account>   address banned now
--   <index>, 'a', <until>                                                                    address already banned
--   <index>, 's', <until>, <count>, <first>, <last>, <prev>, <members>                       subnet banned now
--   <index>, 'm'                                          not this node's any more (Cluster): nothing done

local prefix = ARGV[1]
local now = tonumber(ARGV[2])
local epochMs = tonumber(ARGV[3])
local findtime = tonumber(ARGV[4])
local maxbans = tonumber(ARGV[5])
local subnetBantime = tonumber(ARGV[6])
local trustTtl = tonumber(ARGV[7])
local p = banParams(8)
local now36 = ARGV[19]
local indexTtl = {}
local out = {}
local epoch = nil

local function push(...)
  for _, v in ipairs({...}) do out[#out + 1] = v end
end

local function banAddress(n, base, address, fields, rec)
  local reason, countS, codes, first36, last36, account = fields[1], fields[2], fields[3], fields[4], fields[5], fields[6]
  local key = base .. address
  local r = recParse(rec)
  local u = n36(r.u)
  if u and u > now then
    push(n, 'a', r.u)
    return
  end
  local hist = histList(r.h)
  local duration, recidive, earlier = banDuration(hist, now, p)
  if recidive then reason = 'recidive' end
  local untilMs = now + duration
  local until36 = b36(untilMs)
  r.c, r.f, r.l, r.k, r.o, r.m, r.s = countS, first36, last36, codes, nil, nil, nil
  r.x = account ~= '' and account or nil
  local ttl = putBan(r, hist, now36, now, untilMs, until36, reason, p)
  redis.call('SET', key, recBuild(r), 'PX', ttl)
  -- a window of its own (from when it was counted on its own) starts afresh too
  if not epoch then epoch = windowEpoch(epochMs) end
  redis.call('HDEL', base .. 'w' .. epoch, address)
  redis.call('HDEL', base .. 'w' .. (epoch - 1), address)
  indexBan(indexTtl, base .. 'bans', untilMs, address, duration)
  push(n, 'b', until36, countS, codes, first36, last36, earlier, reason, account)
end

local function trustSubnet(base, subnet, rec)
  local r = recParse(rec)
  local t = n36(r.t)
  if t and t >= now + trustTtl then return end
  r.t = b36(now + trustTtl)
  writeRecord(base .. subnet, r, rec, trustTtl)
end

local function countMember(n, base, subnet, member, rec)
  local r = recParse(rec)
  local u = n36(r.u)
  if u and u > now then return end
  local cutoff = now - findtime
  local members = {}
  for e in string.gmatch(r.s or '', '[^,]+') do
    local at36, m = string.match(e, '^([%l%d]+)@(.+)$')
    local at = n36(at36)
    if at and at > cutoff and m ~= member then members[#members + 1] = {at36, m} end
  end
  members[#members + 1] = {now36, member}
  while #members > maxbans do table.remove(members, 1) end
  local trusted = n36(r.t)
  if #members < maxbans or (trusted and trusted > now) then
    local list = {}
    for j, m in ipairs(members) do list[j] = m[1] .. '@' .. m[2] end
    r.s = table.concat(list, ',')
    writeRecord(base .. subnet, r, rec, findtime)
    return
  end
  local names = {}
  for j, m in ipairs(members) do names[j] = m[2] end
  local hist = histList(r.h)
  local untilMs = now + subnetBantime
  local until36 = b36(untilMs)
  r.c, r.f, r.l, r.k, r.x, r.o, r.s = tostring(#members), members[1][1], now36, nil, nil, nil, nil
  r.m = table.concat(names, ',')
  local ttl = putBan(r, hist, now36, now, untilMs, until36, 'subnet', p)
  redis.call('SET', base .. subnet, recBuild(r), 'PX', ttl)
  indexBan(indexTtl, base .. 'bans', untilMs, subnet, subnetBantime)
  push(n, 's', until36, #members, members[1][1], now36, #hist, r.m)
end

for i = 20, #ARGV do
  local n = i - 19
  local item = ARGV[i]
  local kind, tag, target, rest = string.match(item, '^([ats])|(%x%x%x)|([^|]+)|?(.*)$')
  if not kind then return redis.error_reply('ERR ami-guard: malformed escalation item ' .. n) end
  local base = prefix .. '{' .. tag .. '}'
  -- the first access of an item: on a Cluster whose slots moved, nothing of it has been written yet
  local rec = redis.pcall('GET', base .. target)
  local moved = false
  if type(rec) == 'table' then
    if string.find(rec.err or '', 'WRONGTYPE', 1, true) then
      rec = dropWrongType(rec, base .. target)
    else
      moved = true
    end
  end
  if moved then
    push(n, 'm')
  elseif kind == 'a' then
    local fields = {string.match(rest, '^([^|]+)|(%d+)|(%u*)|([%l%d]+)|([%l%d]+)|(.*)$')}
    if #fields ~= 6 then return redis.error_reply('ERR ami-guard: malformed escalation item ' .. n) end
    banAddress(n, base, target, fields, rec)
  elseif kind == 't' then
    trustSubnet(base, target, rec)
  elseif maxbans > 0 then
    if rest == '' then return redis.error_reply('ERR ami-guard: malformed escalation item ' .. n) end
    countMember(n, base, target, rest, rec)
  end
end

indexExpire(indexTtl)
return out
