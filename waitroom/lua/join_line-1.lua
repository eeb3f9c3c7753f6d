--[[
  join_line-1: hand out `count` consecutive numbers in one event's line.

  Before opening the numbers come from the pre-queue counter (shuffled at
  opening); from opening on, from the arrival counter. Opening happens here or
  in admit_next, whichever runs first at or after opens_at: the pre-queue size
  is frozen and the shuffle seed recorded, atomically, so no join can slip
  into the pre-queue after it closed. Nothing is stored per resident.

  KEYS[1]  event hash
  ARGV[1]  count (>= 1)
  ARGV[2]  now_ms override for tests ('' = Redis TIME)
  ARGV[3]  shuffle seed (hex), used only if this call opens the event

  Returns  {kind, first, admitted, n_pre, now_ms}
           kind 0 = pre-queue numbers, 1 = arrival numbers
          -1 NOT_LOADED, -2 CLOSED, -3 NOT_OPEN_YET, -5 INVALID_ARGUMENT
]]
local event_key = KEYS[1]
local count = tonumber(ARGV[1])
if count == nil or count < 1 then return -5 end
local now_ms
if ARGV[2] ~= '' then
  now_ms = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local h = redis.call('HMGET', event_key, 'loaded', 'state', 'prequeue_at_ms', 'opens_at_ms',
  'closes_at_ms', 'n_pre', 'admitted')
if h[1] == false then return -1 end
local state = h[2]
if state == 'closed' or now_ms >= tonumber(h[5]) then return -2 end
if now_ms < tonumber(h[3]) then return -3 end
local n_pre = h[6]
if n_pre == false and now_ms >= tonumber(h[4]) then
  n_pre = redis.call('HGET', event_key, 'prequeue')
  redis.call('HSET', event_key, 'n_pre', n_pre, 'seed', ARGV[3], 'opened_ms', now_ms)
  if state == 'scheduled' or state == 'prequeue' then
    redis.call('HSET', event_key, 'state', 'open')
  end
end
if n_pre == false then
  if state == 'scheduled' then redis.call('HSET', event_key, 'state', 'prequeue') end
  local last = redis.call('HINCRBY', event_key, 'prequeue', count)
  return {0, last - count, tonumber(h[7]), -1, now_ms}
end
local last = redis.call('HINCRBY', event_key, 'arrivals', count)
return {1, last - count, tonumber(h[7]), tonumber(n_pre), now_ms}
