-- Bind a code to a consumer: the first claimer owns it; the owner may claim again.
-- KEYS: keyspace.ClaimKeys, named by the prologue qrloop.lua adds
-- ARGV: 1 bit offset, 2 campaign, 3 serial, 4 consumer hash, 5 at (ms)
if redis.call('EXISTS', epoch) == 0 then return 'unavailable' end
local owner = redis.call('HGET', owners, ARGV[3])
if owner then
  if owner == ARGV[4] then return 'claimed' end
  return 'taken'
end
if redis.call('GETBIT', void, ARGV[1]) == 1 then return 'voided' end
if redis.call('GETBIT', used, ARGV[1]) == 1 then return 'used' end
redis.call('SETBIT', claimed, ARGV[1], 1)
redis.call('HSET', owners, ARGV[3], ARGV[4])
redis.call('XADD', events, '*', 'claim', table.concat({ARGV[2], ARGV[3], ARGV[4], ARGV[5]}, '|'))
return 'claimed'
