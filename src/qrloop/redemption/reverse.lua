-- Reverse the latest redemption of a code, within its window, from the store that accepted it.
-- KEYS: 1 epoch marker, 2 used bitmap, 3 last-use hash, 4 reversal counts, 5 events stream
-- ARGV: 1 bit offset, 2 campaign, 3 serial, 4 use number, 5 store, 6 terminal,
--       7 now (ms since epoch), 8 reversal window (ms)
if redis.call('EXISTS', KEYS[1]) == 0 then return 'unavailable' end
local last = redis.call('HMGET', KEYS[3], 'use', 'store', 'at', 'reversed')
if not last[1] or last[1] ~= ARGV[4] then return 'not_found' end
if last[2] ~= ARGV[5] then return 'other_store' end
if last[4] == '1' then return 'reversed' end
if tonumber(ARGV[7]) - tonumber(last[3]) >= tonumber(ARGV[8]) then return 'window_closed' end
redis.call('SETBIT', KEYS[2], ARGV[1], 0)
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
redis.call('HSET', KEYS[3], 'reversed', 1)
redis.call('XADD', KEYS[5], '*', 'type', 'reverse', 'campaign', ARGV[2], 'serial', ARGV[3],
  'use', ARGV[4], 'terminal', ARGV[6], 'store', ARGV[5], 'at', ARGV[7])
return 'reversed'
