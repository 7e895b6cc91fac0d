-- Read a code's state without changing it.
-- KEYS: keyspace.CheckKeys, named by the prologue qrloop.lua adds   ARGV: 1 bit offset
if redis.call('EXISTS', epoch) == 0 then return 'unavailable' end
if redis.call('GETBIT', void, ARGV[1]) == 1 then return 'voided' end
if redis.call('GETBIT', used, ARGV[1]) == 1 then return 'already_redeemed' end
return 'valid'
