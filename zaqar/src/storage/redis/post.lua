-- Post: ARGV[3] = client id, then 5 args per message: id, ttl s, delay s,
-- body, checksum ('' = none). Ranks are consecutive, in argument order.
normalize()
local client = ARGV[3]
local n = (#ARGV - 3) / 5
local first = redis.call('INCRBY', K_SEQ, n) - n
for i = 0, n - 1 do
  local base = 4 + i * 5
  local id = ARGV[base]
  local ttl = tonumber(ARGV[base + 1])
  local delay = tonumber(ARGV[base + 2])
  local rank = first + i + 1
  local e = NOW + ttl * 1000
  local mk = mkey(id)
  redis.call('HSET', mk, 't', int(ttl), 'e', int(e), 'cr', int(NOW), 'u', client, 'b', ARGV[base + 3],
             'c', '', 'n', '0', 'd', int(NOW + delay * 1000), 'r', int(rank))
  if ARGV[base + 4] ~= '' then redis.call('HSET', mk, 'k', ARGV[base + 4]) end
  gc_at(mk, e)
  redis.call('ZADD', K_MSGS, int(rank), id)
  redis.call('ZADD', K_EXP, int(e), id)
  redis.call('ZADD', K_FREE, int(rank), id)
end
gc_queue()
return n
