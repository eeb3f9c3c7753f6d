--[[
  issue_pass-9: decide an admitted ticket's admission pass, at most one live pass per ticket.

  Every check comes before the first write: the event is loaded and not closed; the
  ticket's line index is below the admitted counter and not below the floor; its turn
  (the second its index was admitted, found in the batches) is no older than grace_ms,
  or grace_ms + extra_grace_ms for a ticket that asked to be told its turn is near
  (KEYS[8]: the message may reach them late, so their turn waits longer);
  the ticket has not entered (KEYS[7]) and its recorded pass was not redeemed (KEYS[3]).
  Then:
    * a recorded pass that has not expired is returned again (code 1), nothing written;
    * else (no pass yet, or an expired unredeemed one: a resident back within the grace
      period) a new pass is recorded (code 0): the ticket's record (KEYS[4]), the issued
      zset while the turn is still inside hold_ms (the pass replaces the turn's own hold,
      KEYS[5]), and the passes zset, where it counts as active until redeemed or expired,
      with its ticket in the pass tickets hash (KEYS[9]: admit_next-10 finds a redeemed
      pass's member through it, and expects it beside every member of KEYS[6]).
  No token is stored: the caller signs (event, ticket, pass_id) at issued_s, so the same
  live pass always gives the same token. A record left in the older form
  "pass_id|expires_ms|token" counts as issued at floor((expires_ms - pass_ttl_ms) / 1000).

  KEYS[1] event hash   KEYS[2] batches zset (score second, member counter after it)
  KEYS[3] used passes (booking's: pass id -> ms redeemed)
  KEYS[4] this ticket's pass record: string "pass_id|expires_ms|issued_s", kept (PX)
          until the later of the turn's grace end and the pass's expiry, plus a minute
  KEYS[5] issued zset (ticket id -> admission ms)
  KEYS[6] passes zset ("pass id|ticket id" -> expiry ms)   KEYS[7] entered zset (ticket id -> ms)
  KEYS[8] grace-ext zset (ticket ids whose grace is extended -> line index)
  KEYS[9] pass tickets hash (pass id -> ticket id of each pass in KEYS[6])

  ARGV[1] ticket id       ARGV[2] line index    ARGV[3] pass id, if a new pass is recorded
  ARGV[4] issued_s: unix seconds on the waitroom process's own clock, if a new pass is
          recorded (not Redis TIME: booking checks a pass's age on its own clock and
          refuses one signed in the future)
  ARGV[5] pass_ttl_ms     ARGV[6] grace_ms      ARGV[7] hold_ms
  ARGV[8] now_ms override for tests ('' = Redis TIME: turns and expiries are on Redis time)
  ARGV[9] extra_grace_ms: added to grace_ms for a ticket in KEYS[8] (0: none)

  Returns  {code, pass_id, issued_s, admitted_ms, expires_ms}
           code 0 new pass recorded, 1 the same live pass again
          -1 NOT_LOADED, -2 CLOSED, -6 NOT_ADMITTED, -7 TURN_EXPIRED, -8 ALREADY_ENTERED
]]
local event_key, batches_key, used_key = KEYS[1], KEYS[2], KEYS[3]
local record_key, issued_key, passes_key, entered_key = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local grace_ext_key, tickets_key = KEYS[8], KEYS[9]
local ticket_id, index = ARGV[1], tonumber(ARGV[2])
local pass_ttl_ms, grace_ms, hold_ms = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local extra_grace_ms = tonumber(ARGV[9])
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
-- Read only when the plain grace has passed: the common entry costs no extra lookup.
if now_ms - admitted_ms > grace_ms and extra_grace_ms > 0
    and redis.call('ZSCORE', grace_ext_key, ticket_id) then
  grace_ms = grace_ms + extra_grace_ms
end
if now_ms - admitted_ms > grace_ms then return -7 end

if redis.call('ZSCORE', entered_key, ticket_id) then return -8 end
local record = redis.call('GET', record_key)
if record then
  local pass_id, expires, issued = string.match(record, '^([^|]+)|(%d+)|(.+)$')
  if redis.call('ZSCORE', used_key, pass_id) then return -8 end
  local expires_ms = tonumber(expires)
  if expires_ms > now_ms then
    local issued_s = tonumber(issued) or math.floor((expires_ms - pass_ttl_ms) / 1000)
    return {1, pass_id, issued_s, admitted_ms, expires_ms}
  end
end

local pass_id, issued_s = ARGV[3], tonumber(ARGV[4])
local expires_ms = now_ms + pass_ttl_ms
local keep_ms = math.max(admitted_ms + grace_ms, expires_ms) - now_ms + 60000
redis.call('SET', record_key, pass_id .. '|' .. expires_ms .. '|' .. issued_s, 'PX', keep_ms)
if admitted_ms > now_ms - hold_ms then redis.call('ZADD', issued_key, admitted_ms, ticket_id) end
redis.call('ZADD', passes_key, expires_ms, pass_id .. '|' .. ticket_id)
redis.call('HSET', tickets_key, pass_id, ticket_id)
return {0, pass_id, issued_s, admitted_ms, expires_ms}
