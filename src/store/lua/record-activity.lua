-- Records a batch of folded activity, one entry per target, and decides for each target atomically: counted, banned
-- now, or already banned (Store.recordActivity). Keys are built here from the prefix and each entry's bucket tag
-- (BullMQ's extendLocks pattern); on a Cluster the caller sends one call per node, and every key of one target
-- shares its bucket's slot. The ban index is written here, so a ban costs no second round trip.
--
-- The common case of a flood, a failure from a target with no record that stays below maxretry, costs one HGET, one
-- HSET and a few string operations (the fast path below); everything else takes the general path.
--
-- KEYS[1]  any key of the call's node (routing only)
-- ARGV[1]  prefix            ARGV[2]  now (ms)            ARGV[3]  window epoch length (ms)
-- ARGV[4]  maxretry          ARGV[5]  findtime (ms)       ARGV[6]  trust maxretry     ARGV[7] offender maxretry
-- ARGV[8]  scanner maxretry  ARGV[9]  scanner findtime    ARGV[10] trust ttl (ms)
-- ARGV[11..21] the ban rule block (include/record.lua)    ARGV[22] now in base 36
-- ARGV[23] reach: what one failure may weigh at most (a counted target this close to its threshold is on the brink)
-- ARGV[24..] one entry per target:
--   `<tag>|<target>|<failures>|<codes>|<challenges>|<successes>|<trust 0/1>|<first36>|<last36>|<account>`
--
-- A window is a field of HASH `<prefix>{<tag>}w<epoch>` (epochs by the server's clock; the window is moved to the
-- current epoch when written, and a key lives two epochs): `[~]<count>:<failures>[|<challenges>][#<account>]`
--   ~           the target has (or had) a record: read it (a window without `~` proves there was none when it was
--               made, and every script that writes a record flags or deletes the target's window)
--   count       the failures' weights summed
--   failures    `<at36><codes>[*<weight>]` joined by `,`, the oldest first (weight: when it differs from the codes)
--   challenges  `<at36>` joined by `,`, oldest first: ChallengeSent no login has answered yet
--   account     of the last failure (percent-encoded)
--
-- Returns {counts, …verdicts}: counts is every entry's count joined by `,` (failures in the window, or pending
-- challenges when there were no failures), followed by `:<remaining>:<until36>` when the entry's failures leave it on
-- the brink (no more than `reach` short of its threshold, not trusted; until: when its oldest failure leaves
-- findtime): failures weighing `remaining` before `until` ban it, which the caller may act on before asking; then,
-- for each entry that is not simply counted (times in base 36),
--   <index>, 'a', <until>                                                                    already banned
--   <index>, 'b', <until>, <count>, <codes>, <first>, <last>, <prev>, <reason>, <account>    banned now
--   <index>, 't', <reason>, <count>, <codes>, <first>, <last>, <account>
--                   a network holding a trusted address crossed a threshold: not banned; the caller bans the source
--   <index>, 'm'                                       not this node's any more (Cluster): nothing done, send again

local prefix = ARGV[1]
local now = tonumber(ARGV[2])
local epochMs = tonumber(ARGV[3])
local maxretry = tonumber(ARGV[4])
local findtime = tonumber(ARGV[5])
local trustMaxretry = tonumber(ARGV[6])
local offenderMaxretry = tonumber(ARGV[7])
local scanMax = tonumber(ARGV[8])
local scanFindtime = tonumber(ARGV[9])
local trustTtl = tonumber(ARGV[10])
local p = banParams(11)
local now36 = ARGV[22]
local reach = tonumber(ARGV[23])
local cap = math.max(maxretry, trustMaxretry)
local cutoff = now - findtime
local scanCutoff = now - scanFindtime

local epoch, windowTtl = windowEpoch(epochMs)
local curSuffix, prevSuffix = 'w' .. epoch, 'w' .. (epoch - 1)
local expired = {}
local indexTtl = {}
local until36s = {}
local counts = {}
local out = {''}

local ENTRY = '^(%x%x%x)|([^|]+)|(%d+)|(%u*)|(%d+)|(%d+)|([01])|([%l%d]+)|([%l%d]+)|(.*)$'

-- a new key of windows lives two epochs (windowEpoch); once per key and call
local function windowWritten(key)
  if not expired[key] then
    redis.call('PEXPIRE', key, windowTtl)
    expired[key] = true
  end
end

-- `<remaining>:<until36>`: failures `total` of a target whose threshold is `threshold` leave it on the brink (the
-- callers ask only then, `threshold - total <= reach`, so a flood's first failures pay nothing for it)
local function brink(threshold, total, oldest)
  local remaining = threshold - total
  if remaining < 1 then return nil end
  return remaining .. ':' .. b36(oldest + findtime)
end

local function failureEntry(at36, codes, weight)
  if weight == string.len(codes) then return at36 .. codes end
  return at36 .. codes .. '*' .. weight
end

-- The general path: parses the window and the record, applies challenges, logins and failures in that order,
-- decides, and writes what changed. Returns the verdict (or nil: counted), the count, and the brink (or nil).
local function general(n, base, wcur, wold, target, state, fail, codes, chal, succ, trust, first36, last36, account)
  local rec, r = nil, nil
  local hasRec = false
  if not state or string.byte(state, 1) == 126 then
    rec = readString(base .. target)
    if rec then
      r = recParse(rec)
      hasRec = true
    end
  end
  local banUntil = r and n36(r.u)
  if banUntil and banUntil <= now then banUntil = nil end

  -- the window, its times kept as the text they were stored in so a rewrite never encodes them again
  local fTimes, fAts, fWeights, fCodes, cTimes, cAts = {}, {}, {}, {}, {}, {}
  local oldAccount = ''
  if state then
    local body = state
    if string.byte(body, 1) == 126 then body = string.sub(body, 2) end
    local hashAt = string.find(body, '#', 1, true)
    if hashAt then
      oldAccount = string.sub(body, hashAt + 1)
      body = string.sub(body, 1, hashAt - 1)
    end
    local colon = string.find(body, ':', 1, true)
    if colon then body = string.sub(body, colon + 1) end
    local barAt = string.find(body, '|', 1, true)
    local fpart, cpart = body, nil
    if barAt then
      fpart, cpart = string.sub(body, 1, barAt - 1), string.sub(body, barAt + 1)
    end
    for at, cs, w in string.gmatch(fpart, '([%l%d]+)(%u*)%*?(%d*)') do
      local t = tonumber(at, 36)
      if t and t > cutoff then
        fTimes[#fTimes + 1] = t
        fAts[#fAts + 1] = at
        fCodes[#fCodes + 1] = cs
        fWeights[#fWeights + 1] = tonumber(w) or string.len(cs)
      end
    end
    if cpart then
      for at in string.gmatch(cpart, '[%l%d]+') do
        local t = tonumber(at, 36)
        if t and t > scanCutoff then
          cTimes[#cTimes + 1] = t
          cAts[#cAts + 1] = at
        end
      end
    end
  end

  local last = tonumber(last36, 36)
  local writeRec = false
  local verdict = nil
  local count = 0
  local onBrink = nil

  -- logins may trust the target, banned or not
  if trust == '1' and succ > 0 then
    if not r then r = {} end
    r.t = b36(now + trustTtl)
    writeRec = true
  end

  if banUntil then
    verdict = {n, 'a', r.u}
  else
    -- challenges, then the logins answering them (newest first), then the scanner rule
    if chal > 0 then
      for _ = 1, math.min(chal, scanMax) do
        cTimes[#cTimes + 1] = last
        cAts[#cAts + 1] = last36
      end
      while #cTimes > scanMax do
        table.remove(cTimes, 1)
        table.remove(cAts, 1)
      end
    end
    for _ = 1, math.min(succ, #cTimes) do
      cTimes[#cTimes] = nil
      cAts[#cAts] = nil
    end

    local reason, banCount, banCodes, first, lastAt = nil, 0, '', nil, nil
    local trusted = r and n36(r.t)
    trusted = trusted ~= nil and trusted > now
    local threshold = maxretry
    if fail > 0 then
      -- a trusted target gets a higher threshold instead of immunity; a known offender a lower one
      if trusted then
        threshold = trustMaxretry
      elseif r and r.h and r.h ~= '' then
        threshold = math.min(maxretry, offenderMaxretry)
      end
      -- The batch's failures cross the threshold: as one event at a time would have, the ban falls at the event
      -- that crosses it, and the later ones of the batch come after the ban (weights taken as even over the events).
      local prior = 0
      for j = 1, #fWeights do prior = prior + fWeights[j] end
      if prior + fail >= threshold then
        local n = math.max(string.len(codes), 1)
        local k = math.min(n, math.max(1, math.ceil((threshold - prior) * n / fail)))
        fail = math.ceil(k * fail / n)
        codes = string.sub(codes, 1, k)
      end
      -- the oldest stays first: the fast path reads only the first entry's time
      local at = #fTimes + 1
      if at > 1 and last < fTimes[1] then at = 1 end
      table.insert(fTimes, at, last)
      table.insert(fAts, at, last36)
      table.insert(fCodes, at, codes)
      table.insert(fWeights, at, fail)
      -- the window keeps the newest `cap` failures: as many as the highest threshold needs
      local total = 0
      for j = 1, #fWeights do total = total + fWeights[j] end
      while total > cap do
        local excess = total - cap
        if fWeights[1] <= excess then
          total = total - fWeights[1]
          table.remove(fTimes, 1)
          table.remove(fAts, 1)
          table.remove(fCodes, 1)
          table.remove(fWeights, 1)
        else
          fWeights[1] = fWeights[1] - excess
          if string.len(fCodes[1]) > fWeights[1] then fCodes[1] = string.sub(fCodes[1], -fWeights[1]) end
          total = cap
        end
      end
      count = total
      if count >= threshold then
        reason, banCount, banCodes = 'failures', count, table.concat(fCodes)
        -- this batch's failures began at `first`, the others at their own time
        local lo, hi = tonumber(first36, 36), last
        first, lastAt = first36, last36
        for j = 1, #fTimes do
          if fTimes[j] < lo then lo, first = fTimes[j], fAts[j] end
          if fTimes[j] > hi then hi, lastAt = fTimes[j], fAts[j] end
        end
      end
    else
      count = #cTimes
    end
    -- the failures first: a brute-forcer's ChallengeSent before each guess must not make it a scanner
    if not reason and chal > 0 and #cTimes >= scanMax then
      reason, banCount, banCodes = 'scanner', #cTimes, string.rep('O', #cTimes)
      local lo, hi
      for j, t in ipairs(cTimes) do
        if not lo or t < lo then lo, first = t, cAts[j] end
        if not hi or t > hi then hi, lastAt = t, cAts[j] end
      end
    end

    if reason and trusted and string.find(target, '/', 1, true) then
      -- A network that holds a trusted address is never banned whole: the caller bans the address that sent these
      -- (escalate.lua, in that address's bucket), and the network's window starts afresh.
      if state then redis.call('HDEL', wold or wcur, target) end
      local acct = (fail > 0 and account ~= '') and account or oldAccount
      verdict = {n, 't', reason, banCount, banCodes, first, lastAt, acct}
    elseif reason then
      if not r then r = {} end
      local hist = histList(r.h)
      local duration, recidive, earlier = banDuration(hist, now, p)
      if recidive then reason = 'recidive' end
      local untilMs = now + duration
      r.c, r.f, r.l, r.k, r.o, r.m, r.s = tostring(banCount), first, lastAt, banCodes, nil, nil, nil
      r.x = (fail > 0 and account ~= '') and account or (oldAccount ~= '' and oldAccount or nil)
      local until36 = until36s[duration]
      if not until36 then
        until36 = b36(untilMs)
        until36s[duration] = until36
      end
      local ttl = putBan(r, hist, now36, now, untilMs, until36, reason, p)
      redis.call('SET', base .. target, recBuild(r), 'PX', ttl)
      writeRec = false
      -- the window starts afresh once the ban is over
      if state then redis.call('HDEL', wold or wcur, target) end
      indexBan(indexTtl, base .. 'bans', untilMs, target, duration)
      verdict = {n, 'b', until36, banCount, banCodes, first, lastAt, earlier, reason, r.x or ''}
    else
      if fail > 0 and not trusted and threshold - count <= reach then
        local oldest = fTimes[1]
        for j = 2, #fTimes do if fTimes[j] < oldest then oldest = fTimes[j] end end
        onBrink = brink(threshold, count, oldest)
      end
      local parts = {}
      local ftotal = 0
      for j = 1, #fTimes do
        parts[j] = failureEntry(fAts[j], fCodes[j], fWeights[j])
        ftotal = ftotal + fWeights[j]
      end
      local window = table.concat(parts, ',')
      if #cTimes > 0 then window = window .. '|' .. table.concat(cAts, ',') end
      if window == '' then
        -- nothing pending: a phone whose challenge was answered leaves no trace
        if state then redis.call('HDEL', wold or wcur, target) end
      else
        local acct = (fail > 0 and account ~= '') and account or oldAccount
        window = ftotal .. ':' .. window
        if acct ~= '' then window = window .. '#' .. acct end
        if hasRec or writeRec then window = '~' .. window end
        redis.call('HSET', wcur, target, window)
        if wold then redis.call('HDEL', wold, target) end
        if not state or wold then windowWritten(wcur) end
      end
    end
  end

  if writeRec then writeRecord(base .. target, r, rec, trustTtl) end
  return verdict, count, onBrink
end

for i = 24, #ARGV do
  local n = i - 23
  local tag, target, failS, codes, chalS, succS, trust, first36, last36, account = string.match(ARGV[i], ENTRY)
  if not tag then return redis.error_reply('ERR ami-guard: malformed activity entry ' .. n) end
  local fail = tonumber(failS)
  local base = prefix .. '{' .. tag .. '}'
  local wcur = base .. curSuffix
  -- The first access of an entry: on a Cluster whose slots moved since the caller grouped the batch, the key is not
  -- this node's any more, and nothing of the entry has been written yet; the caller sends it again where it now is.
  local state = redis.pcall('HGET', wcur, target)
  local verdict, count, onBrink = nil, nil, nil
  if type(state) == 'table' then
    if string.find(state.err or '', 'WRONGTYPE', 1, true) then
      state = dropWrongType(state, wcur)
    else
      verdict, count, state = {n, 'm'}, 0, nil
    end
  end

  if count then
    -- moved: nothing to do here
  elseif fail > 0 and fail < maxretry and chalS == '0' and succS == '0' then
    if state then
      -- fast path: a window with no record behind it, no challenge, nothing stale and still below maxretry
      local old, firstAt = string.match(state, '^(%d+):([%l%d]+)')
      if old then
        local total = tonumber(old) + fail
        if total < maxretry and tonumber(firstAt, 36) > cutoff and tonumber(last36, 36) >= tonumber(firstAt, 36)
          and not string.find(state, '|', 1, true) then
          local hashAt = string.find(state, '#', 1, true)
          local acct = account
          if acct == '' and hashAt then acct = string.sub(state, hashAt + 1) end
          local entries = string.sub(state, string.len(old) + 2, hashAt and hashAt - 1 or -1)
          local window = total .. ':' .. entries .. ',' .. failureEntry(last36, codes, fail)
          if acct ~= '' then window = window .. '#' .. acct end
          redis.call('HSET', wcur, target, window)
          count = total
          if maxretry - total <= reach then onBrink = brink(maxretry, total, tonumber(firstAt, 36)) end
        end
      end
    elseif trust == '0' then
      local wold = base .. prevSuffix
      state = readField(wold, target)
      if not state and not readString(base .. target) then
        -- a stranger's first failure in this epoch
        local window = fail .. ':' .. failureEntry(last36, codes, fail)
        if account ~= '' then window = window .. '#' .. account end
        redis.call('HSET', wcur, target, window)
        windowWritten(wcur)
        count = fail
        if maxretry - fail <= reach then onBrink = brink(maxretry, fail, tonumber(last36, 36)) end
      elseif state then
        verdict, count, onBrink = general(n, base, wcur, wold, target, state, fail, codes, 0, 0, trust, first36, last36, account)
      else
        -- a record exists: the general path reads it (a second GET of a rare key)
        verdict, count, onBrink = general(n, base, wcur, nil, target, nil, fail, codes, 0, 0, trust, first36, last36, account)
      end
    end
  end
  if not count then
    local wold = nil
    if not state then
      wold = base .. prevSuffix
      state = readField(wold, target)
      if not state then wold = nil end
    end
    verdict, count, onBrink = general(n, base, wcur, wold, target, state, fail, codes, tonumber(chalS), tonumber(succS), trust,
      first36, last36, account)
  end

  counts[n] = onBrink and (count .. ':' .. onBrink) or count
  if verdict then
    for _, v in ipairs(verdict) do out[#out + 1] = v end
  end
end

indexExpire(indexTtl)
out[1] = table.concat(counts, ',')
return out
