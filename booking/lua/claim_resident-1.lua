--[[
  Take the resident's one hold pointer, or report the live one.

  KEYS[1]  resident pointer STRING {rs:<municipality>:<voucher>}:hold
  ARGV[1]  the hold's public id "<slot id>.<token>"
  ARGV[2]  ttl_ms  pointer lifetime (= hold time)

  Returns  {0, ARGV[1]}        taken
           {-7, current value} HOLD_EXISTS: the resident already has a live hold

  Why a separate script: the pointer and the slot's holds live under different hash
  tags (resident vs slot), so one script cannot touch both on Redis Cluster. The store
  sends this script and hold_slot-3 in one pipeline; whichever half the other refused
  is given back at once (release_resident-1 / release_hold-2). A crash in between
  leaves only a pointer or a place that expire on their own, never a second pointer:
  a resident never has two live holds.
]]
local current = redis.call('GET', KEYS[1])
if current then return {-7, current} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return {0, ARGV[1]}
