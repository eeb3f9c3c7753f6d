--[[
  Hold one place of a slot for a resident, atomically.

  KEYS[1]  inventory HASH {sl:<id>}:inv  (cap, booked, closed, from_ms, until_ms, ver)
  KEYS[2]  holds ZSET     {sl:<id>}:holds  (member "<token>:<municipality>:<voucher>" -> expiry ms)
  ARGV[1]  the hold's member
  ARGV[2]  hold_ms   how long the hold lives
  ARGV[3]  now_ms    0 = use Redis TIME (tests inject a clock here)

  Returns  >= 0  places left after this hold
           -1 NOT_LOADED  inventory missing (Redis lost it): caller rebuilds from Postgres
           -2 CLOSED      slot closed by the clinic
           -3 NOT_OPEN    before the slot's booking window
           -4 ENDED       after the window (or the slot is in the past)
           -5 FULL        no place left (expired holds already given back)

  Left = cap - booked - live holds. Expired holds are pruned here, so capacity
  comes back without any sweeper. The same member again is one hold (its expiry is
  renewed), never two places. All checks come before the first write but the pruning.
]]
local inv = KEYS[1]
local holds = KEYS[2]
local member = ARGV[1]
local hold_ms = tonumber(ARGV[2])
local now_ms = tonumber(ARGV[3])
if now_ms == 0 then
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local f = redis.call('HMGET', inv, 'cap', 'booked', 'closed', 'from_ms', 'until_ms')
if not f[1] then return -1 end
if f[3] == '1' then return -2 end
if now_ms < tonumber(f[4]) then return -3 end
if now_ms >= tonumber(f[5]) then return -4 end

redis.call('ZREMRANGEBYSCORE', holds, '-inf', now_ms)
local existing = redis.call('ZSCORE', holds, member)
local live = redis.call('ZCARD', holds)
if existing then live = live - 1 end
local left = tonumber(f[1]) - tonumber(f[2]) - live
if left <= 0 then return -5 end

redis.call('ZADD', holds, now_ms + hold_ms, member)
return left - 1
