--[[
  Claim a live hold for confirmation: extend it so it cannot lapse while Postgres works.

  KEYS[1]  web holds ZSET   {sl:<id>}:holds        (member "<token>:<municipality>:<voucher>"
  KEYS[2]  phone holds ZSET {sl:<id>}:phone-holds   -> expiry ms)
  ARGV[1]  the hold's member
  ARGV[2]  grace_ms  new expiry = now + grace (never shortened)
  ARGV[3]  now_ms    0 = use Redis TIME

  Returns  >= 0  ms until the (extended) hold expires
           -6 HOLD_EXPIRED  hold unknown or lapsed (a lapsed one is removed)

  The hold is looked for in both ZSETs (its token is its own, so it is in one at most):
  whoever confirms it, the channel it was held from keeps counting it until then.
]]
local holds = KEYS[1]
local member = ARGV[1]
local grace_ms = tonumber(ARGV[2])
local now_ms = tonumber(ARGV[3])
if now_ms == 0 then
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local expiry = redis.call('ZSCORE', holds, member)
if not expiry then
  holds = KEYS[2]
  expiry = redis.call('ZSCORE', holds, member)
end
if not expiry then return -6 end
expiry = tonumber(expiry)
if expiry <= now_ms then
  redis.call('ZREM', holds, member)
  return -6
end
if expiry < now_ms + grace_ms then
  expiry = now_ms + grace_ms
  redis.call('ZADD', holds, 'XX', expiry, member)
end
return expiry - now_ms
