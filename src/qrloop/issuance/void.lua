-- Void serials [first, last] of one bitmap chunk and queue the void for settlement.
-- Voiding what is already void changes nothing and queues nothing.
-- KEYS: keyspace.VoidKeys, named by the prologue qrloop.lua adds
-- ARGV: 1 first bit, 2 last bit (inclusive), 3 campaign, 4 first serial, 5 last serial, 6 at (ms)
local first, last = tonumber(ARGV[1]), tonumber(ARGV[2])
local before = redis.call('BITCOUNT', void, first, last, 'BIT')
-- Bit by bit up to a byte boundary at each end, whole bytes of 0xFF in between.
while first <= last and first % 8 ~= 0 do
  redis.call('SETBIT', void, first, 1)
  first = first + 1
end
while last >= first and last % 8 ~= 7 do
  redis.call('SETBIT', void, last, 1)
  last = last - 1
end
if first <= last then
  redis.call('SETRANGE', void, first / 8, string.rep('\255', (last - first + 1) / 8))
end
local added = redis.call('BITCOUNT', void, ARGV[1], ARGV[2], 'BIT') - before
if added > 0 then
  redis.call('XADD', events, '*', 'void', table.concat({ARGV[3], ARGV[4], ARGV[5], ARGV[6]}, '|'))
end
return added
