--[[
  Give a hold's place back at once (confirm refused, resident released, other half refused).

  KEYS[1]  holds ZSET {sl:<id>}:holds  (member "<token>:<municipality>:<voucher>" -> expiry ms)
  ARGV[1]  the hold's member

  Returns  1  removed
           0  already gone (expired or released before): nothing to give back
]]
return redis.call('ZREM', KEYS[1], ARGV[1])
