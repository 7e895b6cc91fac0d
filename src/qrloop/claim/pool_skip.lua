-- The code at a person's reserved offset cannot be handed out (voided, used, someone else's):
-- move their place to the next offset, or give the place back when the pool is spent, so a
-- skipped code never counts against them.
-- KEYS: keyspace.PoolKeys, named by the prologue qrloop.lua adds: the counter of offsets
--       taken, the hash person's hash → offsets held
-- ARGV: 1 pool size, 2 the person's newest hash, 3 the skipped offset
-- Returns {'assigned', offset} | {'empty'}
local kept = {}
for offset in string.gmatch(redis.call('HGET', taken, ARGV[2]) or '', '[^,]+') do
  if offset ~= ARGV[3] then kept[#kept + 1] = offset end
end
local answer = {'empty'}
if tonumber(redis.call('GET', counter) or '0') < tonumber(ARGV[1]) then
  local offset = redis.call('INCR', counter) - 1
  kept[#kept + 1] = tostring(offset)
  answer = {'assigned', offset}
end
if #kept == 0 then
  redis.call('HDEL', taken, ARGV[2])
else
  redis.call('HSET', taken, ARGV[2], table.concat(kept, ','))
end
return answer
