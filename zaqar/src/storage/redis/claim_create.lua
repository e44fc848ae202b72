-- Claim create: ARGV[3] = new claim id, ARGV[4] = ttl s, ARGV[5] = grace s,
-- ARGV[6] = limit, ARGV[7] = max claim count (-1 = no dead-letter policy),
-- ARGV[8] = DLQ hand-over lease in ms.
-- Returns {{claimed message...}, {dead-letter record...}}.
--
-- Takes the oldest messages held by no live claim and not delayed. With a
-- dead-letter policy, a message already claimed max times leaves the queue
-- for the outbox <Q>:dead instead (it no longer counts for the queue); the
-- caller copies the returned records into the DLQ (another slot on Cluster)
-- and then acknowledges them with dlq_ack. Outbox entries whose lease ran
-- out (a caller died between the steps) are handed out again.
normalize()
local cid = ARGV[3]
local ttl = tonumber(ARGV[4])
local grace = tonumber(ARGV[5])
local limit = tonumber(ARGV[6])
local max_count = tonumber(ARGV[7])
local lease = tonumber(ARGV[8])
local ce = NOW + ttl * 1000
local keep_until = ce + grace * 1000
local claimed = {}
local dead = {}

local function dead_record(id)
  local f = redis.call('HMGET', mkey(id), 't', 'e', 'cr', 'u', 'b', 'k', 'n')
  if not f[1] then return nil end
  return {id, f[1], f[2], f[3], f[4] or '', f[5], f[6] or '', f[7] or '0'}
end

-- Earlier hand-overs that were never acknowledged (only with a policy,
-- which names the queue they go to).
local stale = {}
if max_count >= 0 then
  stale = redis.call('ZRANGEBYSCORE', K_DEAD, '-inf', NOW, 'LIMIT', 0, 100)
end
for _, id in ipairs(stale) do
  local rec = dead_record(id)
  if rec then
    redis.call('ZADD', K_DEAD, int(NOW + lease), id)
    dead[#dead + 1] = rec
  else
    redis.call('ZREM', K_DEAD, id)
  end
end

scan_claimable(function(id, m)
  local mk = mkey(id)
  if max_count >= 0 and m.n >= max_count then
    redis.call('ZREM', K_MSGS, id)
    redis.call('ZREM', K_EXP, id)
    redis.call('ZREM', K_FREE, id)
    redis.call('ZADD', K_DEAD, int(NOW + lease), id)
    dead[#dead + 1] = dead_record(id)
    return false
  end
  if max_count >= 0 then m.n = m.n + 1 end
  redis.call('HSET', mk, 'c', cid, 'n', int(m.n))
  if m.e < keep_until then
    m.t = ttl + grace
    redis.call('HSET', mk, 'e', int(keep_until), 't', int(m.t))
    redis.call('ZADD', K_EXP, int(keep_until), id)
    gc_at(mk, keep_until)
  end
  redis.call('ZREM', K_FREE, id)
  redis.call('ZADD', cmkey(cid), m.r, id)
  m.c = cid
  claimed[#claimed + 1] = render(id, m)
  return #claimed >= limit
end)

if #claimed > 0 then
  redis.call('HSET', ckey(cid), 't', int(ttl), 'u', int(NOW), 'e', int(ce))
  redis.call('ZADD', K_CLAIMS, int(ce), cid)
  gc_at(ckey(cid), ce)
  gc_at(cmkey(cid), ce)
end
gc_queue()
return {claimed, dead}
