--[[
  Drop the resident's hold pointer if it still names this hold (compare-and-delete).

  KEYS[1]  resident pointer STRING {rs:<municipality>:<voucher>}:hold
  ARGV[1]  expected value "<hold id>|<slot id>"
  ARGV[2]  extend_ms  0 = delete; > 0 = keep it and set PX to this instead

  Returns  1  deleted / extended
           0  pointer missing or names another hold (left alone)
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local extend_ms = tonumber(ARGV[2])
if extend_ms > 0 then
  redis.call('PEXPIRE', KEYS[1], extend_ms)
else
  redis.call('DEL', KEYS[1])
end
return 1
