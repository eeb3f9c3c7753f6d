--[[
  restore_event-1: undo an administrator's live change (set_event-1) whose durable write
  in Postgres failed, so Redis's live event stays what Postgres says it is.

  The state goes back only if it is still the one the change set (the clock or another
  script may have moved it since: that newer state stands); the fields always go back
  (they are only ever changed by administrators, whose changes are serialised by the
  event's row lock in Postgres, held until this undo is done).

  KEYS[1] event hash
  ARGV[1] state the change set   ARGV[2] state before it
  ARGV[3] rate  ARGV[4] cap  ARGV[5] prequeue_at_ms  ARGV[6] opens_at_ms  ARGV[7] closes_at_ms

  Returns 1 restored (state too), 0 fields restored and state left, -1 NOT_LOADED
]]
local event_key = KEYS[1]
local h = redis.call('HMGET', event_key, 'loaded', 'state')
if h[1] == false then return -1 end
local names = {'rate', 'cap', 'prequeue_at_ms', 'opens_at_ms', 'closes_at_ms'}
for i, name in ipairs(names) do
  redis.call('HSET', event_key, name, ARGV[i + 2])
end
if h[2] == ARGV[1] then
  redis.call('HSET', event_key, 'state', ARGV[2])
  return 1
end
return 0
