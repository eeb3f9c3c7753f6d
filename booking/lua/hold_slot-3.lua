--[[
  Hold one place of a slot for a resident, atomically, from the pool their channel may use.

  KEYS[1]  inventory HASH {sl:<id>}:inv  (cap, booked, phone, kept, release_ms, closed,
                                          from_ms, until_ms, ver)
  KEYS[2]  web holds ZSET   {sl:<id>}:holds        (member "<token>:<municipality>:<voucher>"
  KEYS[3]  phone holds ZSET {sl:<id>}:phone-holds   -> expiry ms)
  ARGV[1]  the hold's member
  ARGV[2]  hold_ms   how long the hold lives
  ARGV[3]  now_ms    0 = use Redis TIME (tests inject a clock here)
  ARGV[4]  channel   'web' | 'operator' (anything else counts as web: the stricter pool)

  Returns  >= 0  places left for this channel after this hold
           -1 NOT_LOADED  inventory missing (Redis lost it): caller rebuilds from Postgres
           -2 CLOSED      slot closed by the clinic
           -3 NOT_OPEN    before the slot's booking window
           -4 ENDED       after the window (or the slot is in the past)
           -5 FULL        no place left for this channel (expired holds already given back)

  Promise "no oversell": every channel, cap - booked - live holds (web and phone) > 0.
  Promise "the phone keeps its share": until release_ms, `kept` places are the phone pool;
  phone bookings and holds use it first and overflow into the web pool, so the phone
  occupies max(phone booked + phone holds, kept) places and a web hold needs
  cap - (booked - phone) - web holds - that > 0. From release_ms on (Redis TIME, or the
  injected clock) nothing is kept: the kept places join the web pool at once, no job.
  The same rule is booking.domain.places_left and booking.store.pg.WEB_LEFT_SQL.

  Expired holds are pruned here, so capacity comes back without any sweeper. The same
  member again is one hold (its expiry is renewed), never two places. All checks come
  before the first write but the pruning.
]]
local inv = KEYS[1]
local web_holds = KEYS[2]
local phone_holds = KEYS[3]
local member = ARGV[1]
local hold_ms = tonumber(ARGV[2])
local now_ms = tonumber(ARGV[3])
local phone = ARGV[4] == 'operator'
if now_ms == 0 then
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local f = redis.call('HMGET', inv, 'cap', 'booked', 'closed', 'from_ms', 'until_ms',
  'phone', 'kept', 'release_ms')
if not f[1] then return -1 end
if f[3] == '1' then return -2 end
if now_ms < tonumber(f[4]) then return -3 end
if now_ms >= tonumber(f[5]) then return -4 end

redis.call('ZREMRANGEBYSCORE', web_holds, '-inf', now_ms)
redis.call('ZREMRANGEBYSCORE', phone_holds, '-inf', now_ms)
local own = phone and phone_holds or web_holds
local existing = redis.call('ZSCORE', own, member)
local web_live = redis.call('ZCARD', web_holds)
local phone_live = redis.call('ZCARD', phone_holds)
if existing then
  if phone then phone_live = phone_live - 1 else web_live = web_live - 1 end
end

local cap = tonumber(f[1])
local booked = tonumber(f[2])
-- A mirror written before the phone share existed has no phone fields: nothing kept.
local booked_phone = tonumber(f[6]) or 0
local kept = 0
if f[7] and now_ms < (tonumber(f[8]) or 0) then kept = tonumber(f[7]) end

local left
if phone then
  left = cap - booked - web_live - phone_live
else
  left = cap - (booked - booked_phone) - web_live - math.max(booked_phone + phone_live, kept)
end
if left <= 0 then return -5 end

redis.call('ZADD', own, now_ms + hold_ms, member)
return left - 1
