-- The notification outbox: one per deployment (key prefix), all under one
-- hash tag, so one slot on Redis Cluster (see the module docs for why).
-- KEYS[1] = <O>:due routes the call; ARGV[1] = <O>, ARGV[2] = now in ms
-- (the server's injected clock), ARGV[3] = operation, then its arguments:
--   enqueue json...               -> number queued (due now, 0 attempts)
--   lease limit lease_ms          -> {{id, attempts, created ms, json}...}
--   complete id                   -> 'ok'
--   retry id attempts due_ms      -> 'ok' (nothing for a completed id)
--   next_due                      -> due ms of the earliest row, or ''
--
-- Keys (<O> = <prefix>:o{outbox}):
--   <O>:due     zset id -> due ms      every pending delivery; a lease
--                                      moves its due time to the lease end
--   <O>:seq     string                 last id handed out
--   <O>:d:<id>  hash j delivery JSON, a failed attempts, cr created ms
-- Ids are zero-padded ranks, so deliveries due at the same ms leave in the
-- order they came (members with one score sort lexicographically). No key
-- of the outbox expires: a delivery leaves only through complete.

local O = ARGV[1]
local NOW = tonumber(ARGV[2])
local op = ARGV[3]
local K_DUE = O .. ':due'
local K_SEQ = O .. ':seq'
local function dkey(id) return O .. ':d:' .. id end
local function int(x) return string.format('%d', x) end

if op == 'enqueue' then
  local n = #ARGV - 3
  if n == 0 then return 0 end
  local last = redis.call('INCRBY', K_SEQ, n)
  for i = 1, n do
    local id = string.format('%020d', last - n + i)
    redis.call('HSET', dkey(id), 'j', ARGV[3 + i], 'a', '0', 'cr', int(NOW))
    redis.call('ZADD', K_DUE, int(NOW), id)
  end
  return n
elseif op == 'lease' then
  local ids = redis.call('ZRANGEBYSCORE', K_DUE, '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[4]))
  local until_ms = int(NOW + tonumber(ARGV[5]))
  local out = {}
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', dkey(id), 'a', 'cr', 'j')
    if f[3] then
      redis.call('ZADD', K_DUE, until_ms, id)
      out[#out + 1] = {id, f[1] or '0', f[2] or '0', f[3]}
    else
      -- An index entry without its row (never written by these scripts).
      redis.call('ZREM', K_DUE, id)
    end
  end
  return out
elseif op == 'complete' then
  redis.call('DEL', dkey(ARGV[4]))
  redis.call('ZREM', K_DUE, ARGV[4])
  return 'ok'
elseif op == 'retry' then
  if redis.call('EXISTS', dkey(ARGV[4])) == 1 then
    redis.call('HSET', dkey(ARGV[4]), 'a', ARGV[5])
    redis.call('ZADD', K_DUE, ARGV[6], ARGV[4])
  end
  return 'ok'
elseif op == 'next_due' then
  local first = redis.call('ZRANGE', K_DUE, 0, 0, 'WITHSCORES')
  if first[2] then return first[2] end
  return ''
end
return redis.error_reply('unknown outbox operation')
