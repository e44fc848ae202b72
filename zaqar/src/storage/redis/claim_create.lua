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

local function dead_record(id, m)
  return {id, int(m.t), int(m.e), int(m.cr), m.u, m.b, m.k, int(m.n)}
end

-- Earlier hand-overs that were never acknowledged (only with a policy,
-- which names the queue they go to).
local stale = {}
if max_count >= 0 then
  stale = redis.call('ZRANGEBYSCORE', K_DEAD, '-inf', NOW, 'LIMIT', 0, 100)
end
if #stale > 0 then
  local recs = redis.call('HMGET', K_M, unpack(stale))
  for i, id in ipairs(stale) do
    if recs[i] then
      redis.call('ZADD', K_DEAD, int(NOW + lease), id)
      dead[#dead + 1] = dead_record(id, decode(recs[i]))
    else
      redis.call('ZREM', K_DEAD, id)
    end
  end
end

local leaving = {}    -- ids leaving for the dead-letter outbox
local records = {}    -- HSET arguments: id, new record, ...
local taken = {}      -- ids leaving the free set
local members = {}    -- ZADD arguments of the claim's message set
local extended = {}   -- ZADD arguments of <Q>:exp for extended expiries
local page = limit
if page < 1 then page = 1 end
local freed = scan_claimable(page, function(id, m)
  if max_count >= 0 and m.n >= max_count then
    leaving[#leaving + 1] = id
    dead[#dead + 1] = dead_record(id, m)
    return false
  end
  if max_count >= 0 then m.n = m.n + 1 end
  m.c = cid
  if m.e < keep_until then
    m.e = keep_until
    m.t = ttl + grace
    extended[#extended + 1] = int(keep_until)
    extended[#extended + 1] = id
  end
  records[#records + 1] = id
  records[#records + 1] = encode(m)
  taken[#taken + 1] = id
  members[#members + 1] = m.r
  members[#members + 1] = id
  claimed[#claimed + 1] = render(id, m)
  return #claimed >= limit
end)

if #leaving > 0 then
  redis.call('ZREM', K_MSGS, unpack(leaving))
  redis.call('ZREM', K_EXP, unpack(leaving))
  redis.call('ZREM', K_FREE, unpack(leaving))
  local outbox = {}
  for _, id in ipairs(leaving) do
    outbox[#outbox + 1] = int(NOW + lease)
    outbox[#outbox + 1] = id
  end
  redis.call('ZADD', K_DEAD, unpack(outbox))
end

if #claimed > 0 then
  redis.call('HSET', K_M, unpack(records))
  redis.call('ZREM', K_FREE, unpack(taken))
  redis.call('ZADD', cmkey(cid), unpack(members))
  if #extended > 0 then redis.call('ZADD', K_EXP, unpack(extended)) end
  redis.call('HSET', ckey(cid), 't', int(ttl), 'u', int(NOW), 'e', int(ce))
  redis.call('ZADD', K_CLAIMS, int(ce), cid)
  gc_at(ckey(cid), ce)
  gc_at(cmkey(cid), ce)
end
if #leaving > 0 or #stale > 0 then
  gc_queue(keep_until)
else
  -- The claim index is re-created with the first live claim, the free set
  -- when delayed messages were passed over.
  if #claimed > 0 then gc_queue_lazy(K_CLAIMS, keep_until) end
  if freed then gc_queue_lazy(K_FREE, keep_until) end
end
return {claimed, dead}
