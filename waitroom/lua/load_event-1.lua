--[[
  load_event-1: put one event's configuration into Redis unless it is already there.

  Redis is authoritative for live state once loaded (admins change it through
  set_event); Postgres seeds it on first use and after a Redis flush.

  KEYS[1]  event hash   ({ev:<id>}:wr:event)
  ARGV     field, value pairs: municipality, name_ja, name_en, state, rate (residents/min),
           cap (max active), prequeue_at_ms, opens_at_ms, closes_at_ms (unix ms)

  Returns  1 loaded now
           0 was already loaded (nothing written)
          -5 INVALID_ARGUMENT (odd number of ARGV)
]]
local event_key = KEYS[1]
if #ARGV % 2 ~= 0 then return -5 end
if redis.call('HEXISTS', event_key, 'loaded') == 1 then return 0 end
redis.call('HSET', event_key, unpack(ARGV))
redis.call('HSET', event_key, 'loaded', '1', 'admitted', '0', 'arrivals', '0', 'prequeue', '0',
  'floor', '0', 'factor', '1')
return 1
