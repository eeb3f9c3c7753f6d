--[[
  Count one attempt in a fixed window (throttling identity checks).

  KEYS[1]  counter STRING
  ARGV[1]  window_ms
  ARGV[2]  limit    attempts allowed per window
  ARGV[3]  commit   1 = count this attempt, 0 = only look

  Returns  {count, ttl_ms}; count > limit means throttled (retry after ttl_ms)
]]
local count
if ARGV[3] == '1' then
  count = redis.call('INCR', KEYS[1])
  if count == 1 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1])) end
else
  count = tonumber(redis.call('GET', KEYS[1]) or '0')
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then ttl = 0 end
return {count, ttl}
