-- Count one one-time code sent to a person in their current hour, which starts with the first
-- send (a counter left without an expiry would block the person for good).
-- KEYS: 1 the person's counter. Returns the sends in the hour, this one included.
local sent = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], 3600) end
return sent
