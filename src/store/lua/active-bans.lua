-- The active part of the ban index of many buckets in one call (Store.activeBans, a reconciliation's read): each
-- bucket's members and ends come back as one string rather than two replies per ban, which at 100k bans is most of
-- the reading's cost in the client. Members whose end has passed are dropped from the index here, as they are read
-- past. On a Cluster the caller sends one call per node, as for record-activity.lua.
--
-- KEYS[1]  any key of the call's node (routing only)
-- ARGV[1]  prefix            ARGV[2]  now (ms)
-- ARGV[3..] one bucket tag each
--
-- Returns two items per bucket, in ARGV order:
--   <n>, <member>\n<end>\n<member>\n<end>…   its n members ending after now, in ZRANGE WITHSCORES order
--   -1, ''                                    not this node's any more (Cluster): nothing done, send again
--   -2, ''                                    the key holds another type (someone else's): read as empty
-- The text is Redis's own, members included: the caller checks each one, and a member holding a newline shows as a
-- count that does not match the lines.

local prefix = ARGV[1]
local now = ARGV[2]
local out = {}
for i = 3, #ARGV do
  local key = prefix .. '{' .. ARGV[i] .. '}bans'
  local dropped = redis.pcall('ZREMRANGEBYSCORE', key, '-inf', now)
  if type(dropped) == 'table' then
    out[#out + 1] = string.find(dropped.err or '', 'WRONGTYPE', 1, true) and -2 or -1
    out[#out + 1] = ''
  else
    local flat = redis.call('ZRANGE', key, '(' .. now, '+inf', 'BYSCORE', 'WITHSCORES')
    out[#out + 1] = #flat / 2
    out[#out + 1] = table.concat(flat, '\n')
  end
end
return out
