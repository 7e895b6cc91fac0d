-- Void one code and queue the void for settlement; voiding twice changes nothing.
-- KEYS: 1 void bitmap, 2 events stream   ARGV: 1 bit offset, 2 campaign, 3 serial, 4 at (ms)
if redis.call('SETBIT', KEYS[1], ARGV[1], 1) == 1 then return 0 end
redis.call('XADD', KEYS[2], '*', 'type', 'void', 'campaign', ARGV[2], 'serial', ARGV[3], 'at', ARGV[4])
return 1
