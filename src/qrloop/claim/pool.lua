-- Reserve one of a person's K places in a pool and the next offset for it, never past the end.
-- KEYS: 1 counter of offsets taken, 2 hash person's hash → offsets held ("3,17,42")
-- ARGV: 1 K, 2 pool size, 3.. the person's hashes, newest consumer key first: places held
--       under an older key count too, new ones go under the newest
-- Returns {'assigned', offset} | {'limit', offsets held} | {'empty'}
local held = {}
for i = 3, #ARGV do
  local taken = redis.call('HGET', KEYS[2], ARGV[i])
  if taken then
    for offset in string.gmatch(taken, '[^,]+') do held[#held + 1] = offset end
  end
end
if #held >= tonumber(ARGV[1]) then return {'limit', table.concat(held, ',')} end
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[2]) then return {'empty'} end
local offset = redis.call('INCR', KEYS[1]) - 1
local mine = redis.call('HGET', KEYS[2], ARGV[3])
if mine then mine = mine .. ',' .. offset else mine = tostring(offset) end
redis.call('HSET', KEYS[2], ARGV[3], mine)
return {'assigned', offset}
