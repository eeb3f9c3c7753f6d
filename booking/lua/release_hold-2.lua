--[[
  Give a hold's place back at once (confirm refused, resident released, other half refused).

  KEYS[1]  web holds ZSET   {sl:<id>}:holds        (member "<token>:<municipality>:<voucher>"
  KEYS[2]  phone holds ZSET {sl:<id>}:phone-holds   -> expiry ms)
  ARGV[1]  the hold's member

  Returns  1  removed (from whichever ZSET held it)
           0  already gone (expired or released before): nothing to give back
]]
return redis.call('ZREM', KEYS[1], ARGV[1]) + redis.call('ZREM', KEYS[2], ARGV[1])
