-- Lifts a ban and resets the failure and challenge windows in one step; the history stays (recidive reads it).
--
-- KEYS[1] ban   HASH (deleted)
-- KEYS[2] fail  LIST (deleted)
-- KEYS[3] chal  LIST (deleted)
--
-- Returns 1 if a ban existed, 0 otherwise.

local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3])
return existed
