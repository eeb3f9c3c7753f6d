--[[
  Count attempts in a fixed window (throttling identity checks); the caller compares
  the count with its limit.

  KEYS[1]  counter STRING
  ARGV[1]  window_ms  the window starts with its first counted attempt
  ARGV[2]  commit     1 = count this attempt, 0 = only look

  Returns  {count, ttl_ms}  attempts in the window, and ms until it ends (0: no window)
]]
local count
if ARGV[2] == '1' then
  count = redis.call('INCR', KEYS[1])
  if count == 1 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1])) end
else
  count = tonumber(redis.call('GET', KEYS[1]) or '0')
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then ttl = 0 end
return {count, ttl}
