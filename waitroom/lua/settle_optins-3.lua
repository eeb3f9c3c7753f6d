--[[
  settle_optins-3: a notifier's claims, settled: written to Postgres (done), or not (back).

  done: the claims and their data go (the address is not kept once the message is in
  the outbox). back: each claim still held returns to the opt-ins zset at its line index,
  for the next claim. Leases are not owned: a slow notifier may settle a claim whose lease
  lapsed and was handed to another; at worst the message is claimed and written twice,
  and Postgres's turn_notices key keeps the second write from reaching the outbox.

  KEYS[1] opt-ins zset (ticket id -> line index)
  KEYS[2] opt-in data hash (ticket id -> "index|...")
  KEYS[3] claims zset (ticket id -> lease expiry ms)

  ARGV[1] 'done' or 'back'    ARGV[2..] ticket ids

  Returns  how many claims were settled
          -5 INVALID_ARGUMENT (mode)
]]
local optins_key, data_key, claims_key = KEYS[1], KEYS[2], KEYS[3]
local mode = ARGV[1]
if mode ~= 'done' and mode ~= 'back' then return -5 end
local settled = 0
for i = 2, #ARGV do
  local ticket_id = ARGV[i]
  if redis.call('ZREM', claims_key, ticket_id) == 1 then
    settled = settled + 1
    if mode == 'done' then
      redis.call('HDEL', data_key, ticket_id)
    else
      local data = redis.call('HGET', data_key, ticket_id)
      if data then
        local index = string.match(data, '^(%d+)|')
        redis.call('ZADD', optins_key, tonumber(index), ticket_id)
      end
    end
  end
end
return settled
