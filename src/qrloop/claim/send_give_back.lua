-- Give back a send taken for an attempt another cap refused. A counter whose hour has lapsed
-- is left alone: DECR would bring it back without an expiry.
-- KEYS: 1 the counter. Returns the count left.
local sent = tonumber(redis.call('GET', KEYS[1]) or '0')
if sent <= 0 then return 0 end
return redis.call('DECR', KEYS[1])
