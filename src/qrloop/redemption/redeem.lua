-- Check and consume one code in a single atomic step, and queue it for settlement.
-- KEYS: 1 epoch marker, 2 used bitmap, 3 void bitmap, 4 events stream, 5 idempotency entry,
--       6 last use, 7 reversal counts
-- ARGV: 1 bit offset, 2 campaign, 3 serial, 4 terminal, 5 store, 6 accepting merchant,
--       7 now (ms since epoch), 8 idempotency TTL (s), 9 last-use TTL (s)
-- Every command here costs the single-threaded server time (and AOF bytes) on each scan,
-- so values are packed strings rather than hashes, and the event is one stream field.

-- A partition without its epoch marker has lost its state: refuse rather than guess.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unavailable'} end

-- A retried request (same terminal and nonce) gets the answer it was first given.
local code = ARGV[2] .. ':' .. ARGV[3]
local prior = redis.call('GET', KEYS[5])
if prior then
  local bar = string.find(prior, '|', 1, true)
  if string.sub(prior, 1, bar - 1) == code then return {'replay', string.sub(prior, bar + 1)} end
  return {'nonce_reused'}
end

if redis.call('GETBIT', KEYS[3], ARGV[1]) == 1 then return {'voided'} end
if redis.call('GETBIT', KEYS[2], ARGV[1]) == 1 then
  -- last use: "use|terminal|store|at|reversed"
  return {'already_redeemed', redis.call('GET', KEYS[6])}
end

-- Each reversal frees the code for one more use; the use number keys the settled row.
local use = 1 + tonumber(redis.call('HGET', KEYS[7], ARGV[3]) or '0')
local id = ARGV[2] .. '-' .. ARGV[3] .. '-' .. use
redis.call('SETBIT', KEYS[2], ARGV[1], 1)
redis.call('SET', KEYS[6], use .. '|' .. ARGV[4] .. '|' .. ARGV[5] .. '|' .. ARGV[7] .. '|0',
  'EX', ARGV[9])
redis.call('XADD', KEYS[4], '*', 'redeem', table.concat(
  {ARGV[2], ARGV[3], use, ARGV[4], ARGV[5], ARGV[6], ARGV[7]}, '|'))
redis.call('SET', KEYS[5], code .. '|' .. id, 'EX', ARGV[8])
return {'redeemed', id}
