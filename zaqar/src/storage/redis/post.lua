-- Post: ARGV[3] = client id, then 5 args per message: id, ttl s, delay s,
-- body, checksum ('' = none). Ranks are consecutive, in argument order.
normalize()
local client = ARGV[3]
local n = (#ARGV - 3) / 5
local first = redis.call('INCRBY', K_SEQ, n) - n
-- The three index entries of every message go in one ZADD per index and
-- chunk (a call from Lua costs about as much as a small command), in
-- chunks that stay far below Lua's limit on unpacked arguments.
local CHUNK = 500
local by_rank, by_exp = {}, {}
local function flush()
  if #by_rank == 0 then return end
  redis.call('ZADD', K_MSGS, unpack(by_rank))
  redis.call('ZADD', K_FREE, unpack(by_rank))
  redis.call('ZADD', K_EXP, unpack(by_exp))
  by_rank, by_exp = {}, {}
end
for i = 0, n - 1 do
  local base = 4 + i * 5
  local id = ARGV[base]
  local ttl = tonumber(ARGV[base + 1])
  local delay = tonumber(ARGV[base + 2])
  local rank = int(first + i + 1)
  local e = NOW + ttl * 1000
  local mk = mkey(id)
  redis.call('HSET', mk, 't', int(ttl), 'e', int(e), 'cr', int(NOW), 'u', client, 'b', ARGV[base + 3],
             'c', '', 'n', '0', 'd', int(NOW + delay * 1000), 'r', rank)
  if ARGV[base + 4] ~= '' then redis.call('HSET', mk, 'k', ARGV[base + 4]) end
  gc_at(mk, e)
  by_rank[#by_rank + 1] = rank
  by_rank[#by_rank + 1] = id
  by_exp[#by_exp + 1] = int(e)
  by_exp[#by_exp + 1] = id
  if #by_rank >= 2 * CHUNK then flush() end
end
flush()
gc_queue()
return n
