--[[
  issue_pass-7: give an admitted ticket its admission pass, at most one live pass per ticket.

  The ticket's line index must be below the admitted counter, and its turn
  (the second its index was admitted, from the batches) no older than grace_ms.
  A live pass already issued for this ticket is returned again (same token);
  a redeemed one means the resident already entered; an expired unredeemed one
  is replaced (a resident back within the grace period). A pass issued while
  the turn is still inside hold_ms replaces the turn's own hold (KEYS[5]);
  every pass is counted as active until redeemed or expired (KEYS[6]).

  KEYS[1] event hash   KEYS[2] batches zset   KEYS[3] used passes (booking's)
  KEYS[4] this ticket's pass record (string "pass_id|expires_ms|token", PX)
  KEYS[5] issued zset (ticket id -> admission ms)
  KEYS[6] passes zset ("pass id|ticket id" -> expiry ms)   KEYS[7] entered zset (ticket id -> ms)

  ARGV[1] ticket id    ARGV[2] line index     ARGV[3] new pass id    ARGV[4] new pass token
  ARGV[5] pass_ttl_ms  ARGV[6] grace_ms       ARGV[7] hold_ms        ARGV[8] now_ms override

  Returns  {code, token, pass_id, admitted_ms, expires_ms}: code 0 new pass, 1 same live pass
          -1 NOT_LOADED, -2 CLOSED, -6 NOT_ADMITTED, -7 TURN_EXPIRED, -8 ALREADY_ENTERED
]]
local event_key, batches_key, used_key = KEYS[1], KEYS[2], KEYS[3]
local record_key, issued_key, passes_key, entered_key = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local ticket_id, index = ARGV[1], tonumber(ARGV[2])
local pass_ttl_ms, grace_ms, hold_ms = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now_ms
if ARGV[8] ~= '' then
  now_ms = tonumber(ARGV[8])
else
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local h = redis.call('HMGET', event_key, 'loaded', 'state', 'admitted', 'floor', 'closes_at_ms')
if h[1] == false then return -1 end
if h[2] == 'closed' or now_ms >= tonumber(h[5]) then return -2 end
if index >= tonumber(h[3]) then return -6 end
if index < tonumber(h[4]) then return -7 end
-- The first batch whose counter passed the index: binary search by rank.
local lo, hi = 0, redis.call('ZCARD', batches_key) - 1
local admitted_s = nil
while lo <= hi do
  local mid = math.floor((lo + hi) / 2)
  local entry = redis.call('ZRANGE', batches_key, mid, mid, 'WITHSCORES')
  if tonumber(entry[1]) > index then
    admitted_s = tonumber(entry[2])
    hi = mid - 1
  else
    lo = mid + 1
  end
end
if admitted_s == nil then return -7 end
local admitted_ms = admitted_s * 1000
if now_ms - admitted_ms > grace_ms then return -7 end

if redis.call('ZSCORE', entered_key, ticket_id) then return -8 end
local record = redis.call('GET', record_key)
if record then
  local pass_id, expires_ms, token = string.match(record, '^([^|]+)|(%d+)|(.+)$')
  if redis.call('ZSCORE', used_key, pass_id) then return -8 end
  if tonumber(expires_ms) > now_ms then
    return {1, token, pass_id, admitted_ms, tonumber(expires_ms)}
  end
end

local expires_ms = now_ms + pass_ttl_ms
local keep_ms = math.max(admitted_ms + grace_ms, expires_ms) - now_ms + 60000
redis.call('SET', record_key, ARGV[3] .. '|' .. expires_ms .. '|' .. ARGV[4], 'PX', keep_ms)
if admitted_ms > now_ms - hold_ms then redis.call('ZADD', issued_key, admitted_ms, ticket_id) end
redis.call('ZADD', passes_key, expires_ms, ARGV[3] .. '|' .. ticket_id)
return {0, ARGV[4], ARGV[3], admitted_ms, expires_ms}
