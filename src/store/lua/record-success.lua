-- A successful login from an address: it answered one of its pending challenges, and (if the caller says the
-- login counts for trust) the address is trusted for a while: a higher failure threshold, never immunity.
--
-- KEYS[1] chal   LIST of pending challenges (record-challenge.lua)
-- KEYS[2] trust  STRING
-- ARGV[1] now (ms)   ARGV[2] trust ttl (ms)   ARGV[3] '1' to mark the address trusted, '0' not to
--
-- Returns 1.

redis.call('LPOP', KEYS[1])
if ARGV[3] == '1' then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) end
return 1
