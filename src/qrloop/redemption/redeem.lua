-- Check and consume one code in a single atomic step, and queue it for settlement.
-- KEYS: keyspace.RedeemKeys, named by the prologue qrloop.lua adds
-- ARGV: 1 bit offset, 2 campaign, 3 serial, 4 terminal, 5 store, 6 accepting merchant,
--       7 now (ms since epoch), 8 nonce, 9 last-use TTL (s)
-- Every command here costs the single-threaded server time (and AOF bytes) on each scan:
-- the code's last use doubles as the retry record, values are packed strings, and the
-- event is one stream field.

-- A partition without its epoch marker has lost its state: refuse rather than guess.
if redis.call('EXISTS', epoch) == 0 then return {'unavailable'} end
if redis.call('GETBIT', void, ARGV[1]) == 1 then return {'voided'} end

-- The code's last use: "use|terminal|store|at|reversed|nonce" (read only off the common path).
local LAST_USE = '^(%d+)|(%d+)|(%d+)|(%d+)|(%d)|(.*)$'
local id_prefix = ARGV[2] .. '-' .. ARGV[3] .. '-'

if redis.call('GETBIT', used, ARGV[1]) == 1 then
  local last = redis.call('GET', last_use)
  if last then
    local use, terminal, _, _, _, nonce = string.match(last, LAST_USE)
    -- The same till retrying the same scan gets the answer it was first given. Rewriting the
    -- last use (unchanged) makes this a write, so a WAITAOF after it also confirms the first
    -- consume, which came before it: a retry after a 503 is answered 200 only once durable.
    if terminal == ARGV[4] and nonce == ARGV[8] then
      redis.call('SET', last_use, last, 'KEEPTTL')
      return {'replay', id_prefix .. use}
    end
  end
  return {'already_redeemed', last}
end

-- Each reversal frees the code for one more use; the use number keys the settled row.
local reversals = tonumber(redis.call('HGET', reversal_counts, ARGV[3]) or '0')
if reversals > 0 then
  -- A till retrying a scan whose redemption was reversed since gets that redemption back,
  -- marked reversed: its retry must never consume the freed code a second time.
  local last = redis.call('GET', last_use)
  if last then
    local use, terminal, _, _, reversed, nonce = string.match(last, LAST_USE)
    if reversed == '1' and terminal == ARGV[4] and nonce == ARGV[8] then
      redis.call('SET', last_use, last, 'KEEPTTL')  -- a write, as for a replay above
      return {'reversed', id_prefix .. use}
    end
  end
end
local use = 1 + reversals
redis.call('SETBIT', used, ARGV[1], 1)
redis.call('SET', last_use, table.concat({use, ARGV[4], ARGV[5], ARGV[7], 0, ARGV[8]}, '|'),
  'EX', ARGV[9])
redis.call('XADD', events, '*', 'redeem', table.concat(
  {ARGV[2], ARGV[3], use, ARGV[4], ARGV[5], ARGV[6], ARGV[7]}, '|'))
return {'redeemed', id_prefix .. use}
