--[[
  opt_in-5: a waiting ticket asks for one "your turn is near" message (an e-mail address or
  a bridge's webhook id), and for the longer grace that comes with it.

  Every check comes before the first write: the event is loaded and not closed; the
  ticket's turn has not come (line index >= the admitted counter: a resident already
  admitted needs no message). A ticket whose message is being written (KEYS[4]) keeps
  that one; otherwise a second opt-in of the same ticket replaces the first (one message
  per ticket, to the address given last).

  KEYS[1] event hash    KEYS[2] opt-ins zset (ticket id -> line index)
  KEYS[3] opt-in data hash (ticket id -> "index|locale|kind|address|ticket token")
  KEYS[4] claims zset (ticket id -> lease expiry ms)
  KEYS[5] grace-ext zset (ticket id -> line index)

  ARGV[1] ticket id   ARGV[2] line index   ARGV[3] "locale|kind|address|ticket token"

  Returns  0 recorded, 1 replaced an earlier opt-in, 2 its message is being written (kept)
          -1 NOT_LOADED, -2 CLOSED, -9 ALREADY_ADMITTED
]]
local event_key, optins_key, data_key, claims_key, ext_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ticket_id, index, record = ARGV[1], tonumber(ARGV[2]), ARGV[3]

local h = redis.call('HMGET', event_key, 'loaded', 'state', 'admitted')
if h[1] == false then return -1 end
if h[2] == 'closed' then return -2 end
if index < tonumber(h[3]) then return -9 end
if redis.call('ZSCORE', claims_key, ticket_id) then return 2 end

local added = redis.call('ZADD', optins_key, index, ticket_id)
redis.call('HSET', data_key, ticket_id, index .. '|' .. record)
redis.call('ZADD', ext_key, index, ticket_id)
if added == 1 then return 0 end
return 1
