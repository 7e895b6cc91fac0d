-- Hand the next code of a pool to a consumer, at most K per consumer, never past the end.
-- KEYS: 1 counter of codes handed out, 2 hash consumer → offsets taken ("3,17,42")
-- ARGV: 1 consumer hash, 2 K, 3 pool size
-- Returns {'assigned', offset} | {'limit', offsets} | {'empty'}
local taken = redis.call('HGET', KEYS[2], ARGV[1])
local count = 0
if taken then
  for _ in string.gmatch(taken, '[^,]+') do count = count + 1 end
end
if count >= tonumber(ARGV[2]) then return {'limit', taken} end
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[3]) then return {'empty'} end
local offset = redis.call('INCR', KEYS[1]) - 1
if taken then taken = taken .. ',' .. offset else taken = tostring(offset) end
redis.call('HSET', KEYS[2], ARGV[1], taken)
return {'assigned', offset}
