--[[
  set_event-1: an administrator's live change to one event (rate, cap, times, state).

  Closed is final. Pause holds admission (the line keeps its order and may
  grow); resume returns to the state the clock gives (open once opened).

  KEYS[1] event hash
  ARGV[1] action: '' | 'pause' | 'resume' | 'close'
  ARGV[2] rate ('' = unchanged)  ARGV[3] cap  ARGV[4] prequeue_at_ms  ARGV[5] opens_at_ms
  ARGV[6] closes_at_ms           ARGV[7] now_ms override ('' = Redis TIME)

  Returns  {old state, new state, old rate, old cap, old prequeue_at_ms, old opens_at_ms,
            old closes_at_ms}
          -1 NOT_LOADED, -2 CLOSED, -4 BAD_TRANSITION
]]
local event_key = KEYS[1]
local action = ARGV[1]
local now_ms
if ARGV[7] ~= '' then
  now_ms = tonumber(ARGV[7])
else
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local h = redis.call('HMGET', event_key, 'loaded', 'state', 'rate', 'cap', 'prequeue_at_ms',
  'opens_at_ms', 'closes_at_ms', 'n_pre')
if h[1] == false then return -1 end
local old = h[2]
if old == 'closed' then return -2 end
local new = old
if action == 'pause' then
  if old == 'paused' then return -4 end
  new = 'paused'
elseif action == 'resume' then
  if old ~= 'paused' then return -4 end
  local prequeue_at = tonumber(ARGV[4] ~= '' and ARGV[4] or h[5])
  local opens_at = tonumber(ARGV[5] ~= '' and ARGV[5] or h[6])
  if h[8] ~= false or now_ms >= opens_at then
    new = 'open'
  elseif now_ms >= prequeue_at then
    new = 'prequeue'
  else
    new = 'scheduled'
  end
elseif action == 'close' then
  new = 'closed'
elseif action ~= '' then
  return -4
end
local names = {'rate', 'cap', 'prequeue_at_ms', 'opens_at_ms', 'closes_at_ms'}
for i, name in ipairs(names) do
  if ARGV[i + 1] ~= '' then redis.call('HSET', event_key, name, ARGV[i + 1]) end
end
redis.call('HSET', event_key, 'state', new)
return {old, new, h[3], h[4], h[5], h[6], h[7]}
