-- Reverse the latest redemption of a code, within its window, from the store that accepted it.
-- KEYS: keyspace.ReverseKeys, named by the prologue qrloop.lua adds
-- ARGV: 1 bit offset, 2 campaign, 3 serial, 4 use number, 5 store, 6 terminal,
--       7 now (ms since epoch), 8 reversal window (ms)
if redis.call('EXISTS', epoch) == 0 then return 'unavailable' end
local last = redis.call('GET', last_use)
if not last then return 'not_found' end
-- last use: "use|terminal|store|at|reversed|nonce"
local use, terminal, store, at, reversed, nonce =
  string.match(last, '^(%d+)|(%d+)|(%d+)|(%d+)|(%d)|(.*)$')
if use ~= ARGV[4] then return 'not_found' end
if store ~= ARGV[5] then return 'other_store' end
if reversed == '1' then return 'reversed' end
if tonumber(ARGV[7]) - tonumber(at) >= tonumber(ARGV[8]) then return 'window_closed' end
redis.call('SETBIT', used, ARGV[1], 0)
redis.call('HINCRBY', reversal_counts, ARGV[3], 1)
redis.call('SET', last_use, table.concat({use, terminal, store, at, 1, nonce}, '|'), 'KEEPTTL')
-- The redemption's time last: its settled row's partition key (the month it is stored in).
redis.call('XADD', events, '*', 'reverse', table.concat(
  {ARGV[2], ARGV[3], ARGV[4], ARGV[6], ARGV[5], ARGV[7], at}, '|'))
return 'reversed'
