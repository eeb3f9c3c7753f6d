--[[
  Mirror a slot's Postgres state into Redis, newest version wins; optionally drop a hold.

  KEYS[1]  inventory HASH   {sl:<id>}:inv
  KEYS[2]  web holds ZSET   {sl:<id>}:holds
  KEYS[3]  phone holds ZSET {sl:<id>}:phone-holds
  ARGV[1]  ver         slots.version after the change (monotonic per slot)
  ARGV[2]  cap
  ARGV[3]  booked
  ARGV[4]  closed      0 | 1
  ARGV[5]  from_ms     window start (ms since epoch)
  ARGV[6]  until_ms    window end, exclusive (ms since epoch)
  ARGV[7]  phone       of booked, how many an operator made
  ARGV[8]  kept        places kept for the phone until release_ms
  ARGV[9]  release_ms  when the kept places join the web pool (ms since epoch)
  ARGV[10] holds member to remove (the confirmed hold, in either ZSET), or ''

  Returns  1  state written (missing or older in Redis)
           0  Redis already had this or a newer version (nothing written but the hold)

  Every write carries the full state and a version, so concurrent confirms,
  cancels and a rebuild after a flush converge on Postgres in any arrival order.
]]
local inv = KEYS[1]
local ver = tonumber(ARGV[1])

local current = redis.call('HGET', inv, 'ver')
local applied = 0
if (not current) or tonumber(current) < ver then
  redis.call('HSET', inv, 'ver', ver, 'cap', ARGV[2], 'booked', ARGV[3], 'closed', ARGV[4],
    'from_ms', ARGV[5], 'until_ms', ARGV[6], 'phone', ARGV[7], 'kept', ARGV[8],
    'release_ms', ARGV[9])
  applied = 1
end
if ARGV[10] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[10])
  redis.call('ZREM', KEYS[3], ARGV[10])
end
return applied
