--[[
  Drop the resident's hold pointer if it still names this hold (compare-and-delete).

  KEYS[1]  resident pointer STRING {rs:<municipality>:<voucher>}:hold
  ARGV[1]  the hold's public id "<slot id>.<token>"

  Returns  1  deleted
           0  pointer missing or names another hold (left alone)
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
