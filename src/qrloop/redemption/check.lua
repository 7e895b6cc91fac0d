-- Read a code's state without changing it.
-- KEYS: 1 epoch marker, 2 used bitmap, 3 void bitmap   ARGV: 1 bit offset
if redis.call('EXISTS', KEYS[1]) == 0 then return 'unavailable' end
if redis.call('GETBIT', KEYS[3], ARGV[1]) == 1 then return 'voided' end
if redis.call('GETBIT', KEYS[2], ARGV[1]) == 1 then return 'already_redeemed' end
return 'valid'
