-- Check and consume one code in a single atomic step, and queue it for settlement.
-- KEYS: 1 epoch marker, 2 used bitmap, 3 void bitmap, 4 events stream, 5 idempotency entry
-- ARGV: 1 bit offset, 2 "campaign:serial", 3 redemption id, 4 terminal, 5 store,
--       6 accepting merchant, 7 redeemed at (ms since epoch), 8 idempotency TTL (s)

-- A partition without its epoch marker has lost its state: refuse rather than guess.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unavailable'} end

-- A retried request (same terminal and nonce) gets the answer it was first given.
local prior = redis.call('GET', KEYS[5])
if prior then
  local bar = string.find(prior, '|', 1, true)
  if string.sub(prior, 1, bar - 1) == ARGV[2] then return {'replay', string.sub(prior, bar + 1)} end
  return {'nonce_reused'}
end

if redis.call('GETBIT', KEYS[3], ARGV[1]) == 1 then return {'voided'} end
if redis.call('GETBIT', KEYS[2], ARGV[1]) == 1 then return {'already_redeemed'} end

redis.call('SETBIT', KEYS[2], ARGV[1], 1)
local campaign, serial = string.match(ARGV[2], '^(%d+):(%d+)$')
redis.call('XADD', KEYS[4], '*', 'type', 'redeem', 'id', ARGV[3], 'campaign', campaign,
  'serial', serial, 'terminal', ARGV[4], 'store', ARGV[5], 'merchant', ARGV[6], 'at', ARGV[7])
redis.call('SET', KEYS[5], ARGV[2] .. '|' .. ARGV[3], 'EX', ARGV[8])
return {'redeemed', ARGV[3]}
