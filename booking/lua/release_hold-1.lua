--[[
  Give a hold's place back at once (confirm refused, resident released, change done).

  KEYS[1]  holds ZSET {sl:<id>}:holds
  ARGV[1]  hold id

  Returns  1  removed
           0  already gone (expired or released before): nothing to give back
]]
return redis.call('ZREM', KEYS[1], ARGV[1])
