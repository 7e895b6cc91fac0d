-- Count one try at a one-time code and hand back what checking it needs.
-- KEYS: 1 the challenge. ARGV: 1 the link it must belong to ("c:<token>" or "p:<pool>").
-- Returns false (no such challenge, expired, or another link's) or {tries, code hash, consumer}
if redis.call('HGET', KEYS[1], 'scope') ~= ARGV[1] then return false end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
return {tries, redis.call('HGET', KEYS[1], 'code'), redis.call('HGET', KEYS[1], 'consumer')}
