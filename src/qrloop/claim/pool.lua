-- Reserve one of a person's K places in a pool and the next offset for it, never past the end.
-- KEYS: keyspace.PoolKeys, named by the prologue qrloop.lua adds: the counter of offsets
--       taken, the hash person's hash → offsets held ("3,17,42")
-- ARGV: 1 K, 2 pool size, 3.. the person's hashes, newest consumer key first: places held
--       under an older key count too, new ones go under the newest
-- Returns {'assigned', offset} | {'limit', offsets held} | {'empty'}
local held = {}
for i = 3, #ARGV do
  local under_hash = redis.call('HGET', taken, ARGV[i])
  if under_hash then
    for offset in string.gmatch(under_hash, '[^,]+') do held[#held + 1] = offset end
  end
end
if #held >= tonumber(ARGV[1]) then return {'limit', table.concat(held, ',')} end
if tonumber(redis.call('GET', counter) or '0') >= tonumber(ARGV[2]) then return {'empty'} end
local offset = redis.call('INCR', counter) - 1
local mine = redis.call('HGET', taken, ARGV[3])
if mine then mine = mine .. ',' .. offset else mine = tostring(offset) end
redis.call('HSET', taken, ARGV[3], mine)
return {'assigned', offset}
