--[[
  admit_next-10: advance one event's admission counter, and report its live state.

  Any waitroom process may call it (leaderless); Redis TIME is the clock. It
  opens the event at opens_at (freezing the pre-queue), closes it at
  closes_at, then admits
      n = min(rate budget, max_active - active, residents waiting)
  where the rate budget is a token bucket filled at rate * factor per minute
  (factor < 1 while booking reports it is slow; at most one second of budget
  is banked), and

      active = live booking sessions                       (KEYS[3], score = expiry ms)
             + admitted in the last hold_ms with no pass yet (batches - KEYS[7])
             + passes issued, neither redeemed nor expired   (KEYS[8] minus KEYS[4])

  so an abandoned turn frees its place after hold_ms and never stalls the line.
  Of the turns admitted between hold_ms and dormant_after_ms ago ("matured"), those
  that took no pass are "dormant": most likely abandoned, holding their place until
  hold_ms. Both counts are returned for the wait forecast (nothing depends on them).
  Nothing is admitted while paused, closed, before opening, or when the event is
  sold out: booking's inventory (KEYS[5]) says "remaining" 0 in a report counted
  after opening ("updated_ms" >= opened_ms; booking takes that time before it
  counts). A report from before opening (it counts the places that will open)
  never makes the event sold out; if it said 0, "remaining" is returned empty
  (unknown) until a report after opening comes. Admission batches are recorded as
  (second -> counter after it), one entry per second, kept for retention_s.

  Passes: expired ones leave KEYS[8]; of the others, those booking redeemed move to
  KEYS[9]. The cost follows the redemptions and expiries since the last call, not the
  passes outstanding: booking scores a used pass by the Redis TIME it redeemed it
  (open_session-2), so only used passes scored since this script's last call
  (event field "passes_ms"), less lookback_ms for a clock that stepped back (a failover,
  NTP), are looked up, through KEYS[10] (pass id -> ticket id, written with each pass by
  issue_pass-9: kept exactly in step with KEYS[8]). The whole of KEYS[8] is checked
  instead (the one scan, as admit_next-9 did on every call, which also rebuilds KEYS[10])
  when that pairing cannot be trusted: no "passes_ms" yet (first call of this version,
  event hash lost), another script refreshed the event since (bucket_ms differs:
  admit_next-9 of a process not yet upgraded, which does not keep KEYS[10]), or KEYS[8]
  and KEYS[10] do not count alike (a pass from issue_pass-8).

  KEYS[1] event hash          KEYS[2] batches zset (score second, member counter)
  KEYS[3] booking sessions    KEYS[4] used passes (booking's: pass id -> ms redeemed)
  KEYS[5] inventory hash      KEYS[6] booking load hash
  KEYS[7] issued zset (ticket id -> admission ms)
  KEYS[8] passes zset ("pass id|ticket id" -> expiry ms)
  KEYS[9] entered zset (ticket id -> ms its pass was seen redeemed; kept retention_s)
  KEYS[10] pass tickets hash (pass id -> ticket id of each pass in KEYS[8])

  ARGV[1] now_ms override ('' = Redis TIME)   ARGV[2] shuffle seed (hex), if opening now
  ARGV[3] hold_ms          ARGV[4] retention_s        ARGV[5] return batches from this second on
  ARGV[6] target p95 ms    ARGV[7] factor recovery per second (e.g. 0.05)
  ARGV[8] load report stale after ms
  ARGV[9] dormant_after_ms: a turn without a pass this long after admission counts as dormant
  ARGV[10] lookback_ms: used passes scored this much before the last call are looked at again

  Returns  {0, {field, value, ...}, {second, counter, ...}}
          -1 NOT_LOADED
]]
local event_key, batches_key, sessions_key, used_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local inventory_key, load_key, issued_key, passes_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local entered_key, tickets_key = KEYS[9], KEYS[10]

local now_ms
if ARGV[1] ~= '' then
  now_ms = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local hold_ms = tonumber(ARGV[3])
local retention_s = tonumber(ARGV[4])
local since_s = tonumber(ARGV[5])
local target_p95 = tonumber(ARGV[6])
local recover = tonumber(ARGV[7])
local stale_ms = tonumber(ARGV[8])
local dormant_after_ms = tonumber(ARGV[9])
local lookback_ms = tonumber(ARGV[10])

local h = redis.call('HMGET', event_key, 'loaded', 'state', 'rate', 'cap', 'prequeue_at_ms',
  'opens_at_ms', 'closes_at_ms', 'admitted', 'arrivals', 'prequeue', 'n_pre', 'seed', 'tokens',
  'bucket_ms', 'factor', 'factor_ms', 'floor', 'opened_ms', 'passes_ms')
if h[1] == false then return -1 end
local state, rate, cap = h[2], tonumber(h[3]), tonumber(h[4])
local prequeue_at, opens_at, closes_at = tonumber(h[5]), tonumber(h[6]), tonumber(h[7])
local admitted, arrivals, prequeue = tonumber(h[8]), tonumber(h[9]), tonumber(h[10])
local n_pre, seed, opened_ms = h[11], h[12], h[18]
-- A new bucket starts full: the first second's budget is there at opening.
local tokens, bucket_ms = tonumber(h[13] or '1e18'), tonumber(h[14] or now_ms)
local factor, factor_ms = tonumber(h[15] or '1'), tonumber(h[16] or now_ms)
local floor = tonumber(h[17])
local passes_ms = tonumber(h[19] or '')

-- Clock-driven transitions.
if state ~= 'closed' and now_ms >= closes_at then
  state = 'closed'
  redis.call('HSET', event_key, 'state', state)
end
if n_pre == false and state ~= 'closed' and now_ms >= opens_at then
  n_pre = tostring(prequeue)
  seed = ARGV[2]
  opened_ms = tostring(now_ms)
  redis.call('HSET', event_key, 'n_pre', n_pre, 'seed', seed, 'opened_ms', opened_ms)
  if state == 'scheduled' or state == 'prequeue' then state = 'open' end
  redis.call('HSET', event_key, 'state', state)
elseif state == 'scheduled' and now_ms >= prequeue_at then
  state = 'prequeue'
  redis.call('HSET', event_key, 'state', state)
end

-- Backpressure: booking's p95 above target lowers the factor at once; recovery is gradual.
local target_factor = 1
local load = redis.call('HMGET', load_key, 'p95_ms', 'updated_ms')
local p95, load_ms = tonumber(load[1] or ''), tonumber(load[2] or '')
if p95 ~= nil and load_ms ~= nil and now_ms - load_ms <= stale_ms and p95 > target_p95 then
  target_factor = math.max(0.05, target_p95 / p95)
end
local dt_s = math.max(0, now_ms - factor_ms) / 1000
factor = math.min(target_factor, factor + recover * dt_s, 1)

-- Token bucket at the effective rate; at most one second of budget is banked.
local per_ms = rate * factor / 60000
local burst = math.max(1, rate * factor / 60)
tokens = math.min(burst, tokens + math.max(0, now_ms - bucket_ms) * per_ms)

-- Active residents.
redis.call('ZREMRANGEBYSCORE', sessions_key, '-inf', now_ms)
local sessions = redis.call('ZCARD', sessions_key)
local boundary_s = math.floor((now_ms - hold_ms) / 1000)
local before = redis.call('ZREVRANGEBYSCORE', batches_key, boundary_s, '-inf', 'LIMIT', 0, 1)
local counter_at_boundary = floor
if before[1] then counter_at_boundary = tonumber(before[1]) end
redis.call('ZREMRANGEBYSCORE', issued_key, '-inf', now_ms - hold_ms)
local fresh = math.max(0, (admitted - counter_at_boundary) - redis.call('ZCARD', issued_key))
local matured, dormant = 0, 0
if dormant_after_ms < hold_ms then
  local mature_s = math.floor((now_ms - dormant_after_ms) / 1000)
  local at = redis.call('ZREVRANGEBYSCORE', batches_key, mature_s, '-inf', 'LIMIT', 0, 1)
  local counter_at_mature = floor
  if at[1] then counter_at_mature = tonumber(at[1]) end
  matured = math.max(0, counter_at_mature - counter_at_boundary)
  -- issued is scored by each turn's admission ms (and holds only the last hold_ms).
  local taken = redis.call('ZCOUNT', issued_key, '-inf', now_ms - dormant_after_ms)
  dormant = math.max(0, math.min(fresh, matured - taken))
end
-- Passes. Chunks of 1000 wherever a list is unpacked: Lua's stack is bounded.
local expired = redis.call('ZRANGEBYSCORE', passes_key, '-inf', now_ms)
for i = 1, #expired, 1000 do
  local ids = {}
  for j = i, math.min(i + 999, #expired) do ids[#ids + 1] = string.match(expired[j], '^[^|]+') end
  redis.call('HDEL', tickets_key, unpack(ids))
end
redis.call('ZREMRANGEBYSCORE', passes_key, '-inf', now_ms)
-- Redeemed: remembered per ticket (booking forgets used passes after a while).
local paired = passes_ms ~= nil and passes_ms == tonumber(h[14] or '')
if paired then
  -- Scored since the last call (its very ms included) less the lookback, or in the future;
  -- a few commands per chunk, whatever the number redeemed.
  local since = math.min(passes_ms, now_ms) - lookback_ms
  local used = redis.call('ZRANGEBYSCORE', used_key, since, '+inf')
  for i = 1, #used, 1000 do
    local ids = {unpack(used, i, math.min(i + 999, #used))}
    local tickets = redis.call('HMGET', tickets_key, unpack(ids))
    local found, members = {}, {}
    for j = 1, #ids do
      if tickets[j] then
        found[#found + 1] = ids[j]
        members[#members + 1] = ids[j] .. '|' .. tickets[j]
      end
    end
    if #found > 0 then
      redis.call('HDEL', tickets_key, unpack(found))
      local present = redis.call('ZMSCORE', passes_key, unpack(members))
      local gone, seen = {}, {}
      for j = 1, #members do
        if present[j] then
          gone[#gone + 1] = members[j]
          seen[#seen + 1] = now_ms
          seen[#seen + 1] = string.match(members[j], '|(.+)$')
        else
          paired = false  -- mapped, not in KEYS[8]: another script took it out
        end
      end
      if #gone > 0 then
        redis.call('ZREM', passes_key, unpack(gone))
        redis.call('ZADD', entered_key, unpack(seen))
      end
    end
  end
end
if not paired or redis.call('HLEN', tickets_key) ~= redis.call('ZCARD', passes_key) then
  -- The scan, once: every pass checked against booking's used passes, KEYS[10] rebuilt.
  redis.call('DEL', tickets_key)
  local mapped = {}
  for _, member in ipairs(redis.call('ZRANGE', passes_key, 0, -1)) do
    local pass_id, ticket_id = string.match(member, '^([^|]+)|(.+)$')
    if redis.call('ZSCORE', used_key, pass_id) then
      redis.call('ZREM', passes_key, member)
      redis.call('ZADD', entered_key, now_ms, ticket_id)
    else
      mapped[#mapped + 1] = pass_id
      mapped[#mapped + 1] = ticket_id
    end
  end
  for i = 1, #mapped, 1000 do
    redis.call('HSET', tickets_key, unpack(mapped, i, math.min(i + 999, #mapped)))
  end
end
local outstanding = redis.call('ZCARD', passes_key)
redis.call('ZREMRANGEBYSCORE', entered_key, '-inf', now_ms - retention_s * 1000)
local active = sessions + fresh + outstanding

local inventory = redis.call('HMGET', inventory_key, 'remaining', 'updated_ms')
local remaining = tonumber(inventory[1] or '')
local counted_ms = tonumber(inventory[2] or '')
local sold_out = false
if remaining ~= nil and remaining <= 0 then
  if opened_ms ~= false and counted_ms ~= nil and counted_ms >= tonumber(opened_ms) then
    sold_out = true
  elseif n_pre ~= false then
    remaining = nil  -- counted before opening: not known yet, and not sold out
  end
end

local admit = 0
if state == 'open' and n_pre ~= false and not sold_out then
  local waiting = tonumber(n_pre) + arrivals - admitted
  admit = math.max(0, math.min(math.floor(tokens), cap - active, waiting))
end
if admit > 0 then
  admitted = admitted + admit
  tokens = tokens - admit
  fresh = fresh + admit
  active = active + admit
  local now_s = math.floor(now_ms / 1000)
  local last = redis.call('ZREVRANGE', batches_key, 0, 0, 'WITHSCORES')
  if last[1] and tonumber(last[2]) == now_s then redis.call('ZREM', batches_key, last[1]) end
  redis.call('ZADD', batches_key, now_s, admitted)
  local old = redis.call('ZRANGEBYSCORE', batches_key, '-inf', now_s - retention_s)
  if #old > 0 then
    floor = tonumber(old[#old])
    redis.call('ZREMRANGEBYSCORE', batches_key, '-inf', now_s - retention_s)
  end
end
-- passes_ms beside bucket_ms, equal: the next call knows no other script refreshed between.
redis.call('HSET', event_key, 'admitted', admitted, 'tokens', tostring(tokens),
  'bucket_ms', now_ms, 'factor', tostring(factor), 'factor_ms', now_ms, 'floor', floor,
  'passes_ms', now_ms)

local fields = {
  'state', state, 'rate', rate, 'cap', cap, 'admitted', admitted, 'arrivals', arrivals,
  'prequeue', prequeue, 'n_pre', n_pre or '', 'seed', seed or '', 'opened_ms', opened_ms or '',
  'prequeue_at_ms', prequeue_at, 'opens_at_ms', opens_at, 'closes_at_ms', closes_at,
  'remaining', remaining == nil and '' or tostring(remaining), 'active', active,
  'sessions', sessions, 'fresh', fresh, 'outstanding', outstanding,
  'sold_out', sold_out and 1 or 0, 'dormant', dormant, 'matured', matured,
  'factor', tostring(factor), 'floor', floor, 'now_ms', now_ms, 'admitted_now', admit,
}
local batches = redis.call('ZRANGEBYSCORE', batches_key, since_s, '+inf', 'WITHSCORES')
return {0, fields, batches}
