--[[
  claim_optins-5: take the opt-ins whose turn is near, for one notifier to write.

  Any waitroom process may call it (one notifier each, safe with many): an opt-in leaves
  the opt-ins zset and enters the claims zset with a lease in one atomic step, so two
  notifiers never take the same one. The notifier writes the messages to Postgres, then
  settles the claims (settle_optins-3: done, or back on failure). A claim whose lease ran
  out (its notifier died between the claim and the settle) is handed out again here:
  at least once; Postgres's turn_notices key makes the write once.

  Near = line index < admitted + lead (lead: how many residents the line admits in the
  notice's lead time, worked out by the caller from the admission rate). A closed event's
  opt-ins are dropped (addresses are not kept past the line), nothing is claimed. Grace
  extensions of turns older than the floor (their batches are gone) are dropped as well.

  KEYS[1] event hash    KEYS[2] opt-ins zset (ticket id -> line index)
  KEYS[3] opt-in data hash (ticket id -> "index|locale|kind|address|ticket token")
  KEYS[4] claims zset (ticket id -> lease expiry ms)
  KEYS[5] grace-ext zset (ticket id -> line index)

  ARGV[1] now_ms override ('' = Redis TIME)   ARGV[2] lead (residents)
  ARGV[3] most opt-ins to claim               ARGV[4] lease_ms

  Returns  {admitted, {ticket id, data, ticket id, data, ...}}
          -1 NOT_LOADED
]]
local event_key, optins_key, data_key, claims_key, ext_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now_ms
if ARGV[1] ~= '' then
  now_ms = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local lead, most, lease_ms = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

local h = redis.call('HMGET', event_key, 'loaded', 'state', 'admitted', 'floor')
if h[1] == false then return -1 end
local admitted, floor = tonumber(h[3]), tonumber(h[4])
if h[2] == 'closed' then
  redis.call('DEL', optins_key, data_key, claims_key, ext_key)
  return {admitted, {}}
end
redis.call('ZREMRANGEBYSCORE', ext_key, '-inf', '(' .. floor)

local out = {}
local lapsed = redis.call('ZRANGEBYSCORE', claims_key, '-inf', now_ms, 'LIMIT', 0, most)
local near = {}
if #lapsed < most and lead > 0 then
  near = redis.call('ZRANGEBYSCORE', optins_key, '-inf', '(' .. (admitted + lead),
    'LIMIT', 0, most - #lapsed)
end
for _, list in ipairs({lapsed, near}) do
  for _, ticket_id in ipairs(list) do
    local data = redis.call('HGET', data_key, ticket_id)
    redis.call('ZREM', optins_key, ticket_id)
    if data then
      redis.call('ZADD', claims_key, now_ms + lease_ms, ticket_id)
      out[#out + 1] = ticket_id
      out[#out + 1] = data
    else
      redis.call('ZREM', claims_key, ticket_id)
    end
  end
end
return {admitted, out}
