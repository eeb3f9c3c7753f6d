--[[
  Take the resident's one hold pointer, or report the live one.

  KEYS[1]  resident pointer STRING {rs:<municipality>:<voucher>}:hold
  ARGV[1]  value "<hold id>|<slot id>"
  ARGV[2]  ttl_ms  pointer lifetime (= hold time)

  Returns  0  taken
           -7 HOLD_EXISTS  another live hold; reply is {-7, current value}

  Why a separate script: the pointer and the slot's holds live under different
  hash tags (resident vs slot), so one script cannot touch both on Redis Cluster.
  The pointer is claimed FIRST; the slot hold is taken after it, and if that
  fails the caller deletes the pointer again (release_resident-1, compare-and-
  delete). A crash in between leaves only a pointer that expires with ttl_ms,
  never a second hold: a resident can never have two pointers at once.
]]
local current = redis.call('GET', KEYS[1])
if current then return {-7, current} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return {0, ARGV[1]}
