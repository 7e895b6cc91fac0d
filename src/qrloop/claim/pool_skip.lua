-- The code at a person's reserved offset cannot be handed out (voided, used, someone else's):
-- move their place to the next offset, or give the place back when the pool is spent, so a
-- skipped code never counts against them.
-- KEYS: 1 counter of offsets taken, 2 hash person's hash → offsets held
-- ARGV: 1 pool size, 2 the person's newest hash, 3 the skipped offset
-- Returns {'assigned', offset} | {'empty'}
local kept = {}
for offset in string.gmatch(redis.call('HGET', KEYS[2], ARGV[2]) or '', '[^,]+') do
  if offset ~= ARGV[3] then kept[#kept + 1] = offset end
end
local answer = {'empty'}
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  local offset = redis.call('INCR', KEYS[1]) - 1
  kept[#kept + 1] = tostring(offset)
  answer = {'assigned', offset}
end
if #kept == 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
else
  redis.call('HSET', KEYS[2], ARGV[2], table.concat(kept, ','))
end
return answer
