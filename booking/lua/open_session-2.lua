--[[
  Redeem an admission pass and register the booking session it opens, atomically.

  KEYS[1]  used passes ZSET      {ev:<id>}:used-passes      (pass id -> redeemed ms)
  KEYS[2]  booking sessions ZSET {ev:<id>}:booking-sessions (session id -> expiry ms)
  ARGV[1]  pass id
  ARGV[2]  session id
  ARGV[3]  session_ttl_ms
  ARGV[4]  now_ms   0 = use Redis TIME
  ARGV[5]  pass_keep_ms  how long a redeemed pass is remembered (>= pass lifetime)

  Returns  >= 0  live sessions of the event after this one joined
           -8 PASS_USED  this pass already opened a session

  Both keys share the event's hash tag (machiai.keys), shared with the waitroom.
]]
local used = KEYS[1]
local sessions = KEYS[2]
local now_ms = tonumber(ARGV[4])
if now_ms == 0 then
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if redis.call('ZSCORE', used, ARGV[1]) then return -8 end

redis.call('ZADD', used, 'NX', now_ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', used, '-inf', now_ms - tonumber(ARGV[5]))
redis.call('ZREMRANGEBYSCORE', sessions, '-inf', now_ms)
redis.call('ZADD', sessions, now_ms + tonumber(ARGV[3]), ARGV[2])
return redis.call('ZCARD', sessions)
