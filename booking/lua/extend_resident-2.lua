--[[
  Extend the resident's live hold once (the page's "more time" button, WCAG 2.2.1).

  KEYS[1]  resident pointer STRING {rs:<municipality>:<voucher>}:hold
  KEYS[2]  extended flag STRING    {rs:<municipality>:<voucher>}:extended
  ARGV[1]  the hold's public id "<slot id>.<token>"
  ARGV[2]  ttl_ms  the pointer's new lifetime from now (= hold time)

  Returns  1  extended (the caller extends the slot's hold to match: claim_hold-2)
           -6 HOLD_EXPIRED     the pointer is gone or names another hold
           -9 EXTENDED_BEFORE  this hold was extended once already

  The flag names the hold it was used for and lives as long as the pointer, so the
  next hold may be extended once again. Checks come before the first write.
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -6 end
if redis.call('GET', KEYS[2]) == ARGV[1] then return -9 end
local ttl_ms = tonumber(ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl_ms)
redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl_ms)
return 1
