-- Lifts a ban and resets the failure window in one step; the history stays.
--
-- KEYS[1] ban   HASH (deleted)
-- KEYS[2] fail  LIST (deleted)
--
-- Returns 1 if a ban existed, 0 otherwise.

local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
return existed
