-- Take one send from a cap, or refuse without counting it (a refused attempt uses up nothing).
-- The hour starts with the first send (a counter left without an expiry would block for good).
-- KEYS: 1 the counter. ARGV: 1 the cap, 2 the window in seconds. Returns 1 taken, 0 refused.
local sent = tonumber(redis.call('GET', KEYS[1]) or '0')
if sent >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
