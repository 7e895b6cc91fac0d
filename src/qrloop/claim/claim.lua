-- Bind a code to a consumer: the first claimer owns it; the owner may claim again.
-- KEYS: 1 epoch marker, 2 claimed bitmap, 3 owners hash, 4 void bitmap, 5 used bitmap,
--       6 events stream
-- ARGV: 1 bit offset, 2 campaign, 3 serial, 4 consumer hash, 5 at (ms)
if redis.call('EXISTS', KEYS[1]) == 0 then return 'unavailable' end
local owner = redis.call('HGET', KEYS[3], ARGV[3])
if owner then
  if owner == ARGV[4] then return 'claimed' end
  return 'taken'
end
if redis.call('GETBIT', KEYS[4], ARGV[1]) == 1 then return 'voided' end
if redis.call('GETBIT', KEYS[5], ARGV[1]) == 1 then return 'used' end
redis.call('SETBIT', KEYS[2], ARGV[1], 1)
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('XADD', KEYS[6], '*', 'claim', table.concat({ARGV[2], ARGV[3], ARGV[4], ARGV[5]}, '|'))
return 'claimed'
