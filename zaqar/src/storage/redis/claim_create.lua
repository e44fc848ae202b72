-- Claim create: ARGV[3] = new claim id, ARGV[4] = claim ttl s, ARGV[5] =
-- claim end ms, ARGV[6] = ttl s of an extended message (ttl + grace),
-- ARGV[7] = the expiry a claimed message keeps at least (claim end +
-- grace, ms), ARGV[8] = limit, ARGV[9] = max claim count (-1 = no
-- dead-letter policy), ARGV[10] = DLQ hand-over lease in ms, ARGV[11] =
-- '' or the metadata stamp the server read the dead-letter policy with
-- (see metadata_stamp.rs). The server computes the times
-- (storage::deadline); they are checked here again.
-- Returns {{claimed message...}, {id leaving for the dead-letter queue...},
-- ''}, or {{}, {}, 'stale'}, having written nothing, when the stamp is not
-- the queue's any more.
--
-- Takes the oldest messages held by no live claim and not delayed. With a
-- dead-letter policy, a message already claimed max times leaves the queue
-- for the outbox <Q>:dead instead (it no longer counts for the queue); the
-- caller reads their records (dlq_read), copies them into the DLQ
-- (another slot on Cluster) and then acknowledges them with dlq_ack, a
-- chunk at a time. Outbox entries whose lease ran out (a caller died
-- between the steps) are handed out again.
local cid = ARGV[3]
local ttl = arg_int(4, 0, MAX_SECS)
local ce = arg_int(5, NOW, MAX_TIME)
local extended_ttl = arg_int(6, ttl, MAX_SECS)
local keep_until = arg_int(7, ce, MAX_TIME)
local limit = arg_int(8, 0, SCAN_BUDGET)
local max_count = arg_int(9, -1, 2147483647)
local lease = arg_int(10, 0, 86400000)
if cid == '' then error('empty claim id') end
local stamp = ARGV[11] or ''
if stamp ~= '' and redis.call('GET', Q .. ':mv') ~= stamp then return {{}, {}, 'stale'} end

normalize()
local claimed = {}
local dead = {}

-- Earlier hand-overs that were never acknowledged (only with a policy,
-- which names the queue they go to).
local stale = {}
if max_count >= 0 then
  stale = redis.call('ZRANGEBYSCORE', K_DEAD, '-inf', NOW_S, 'LIMIT', '0', '100')
end
if #stale > 0 then
  local recs = hmget(K_M, stale)
  local renewed, gone = {}, {}
  for i, id in ipairs(stale) do
    if recs[i] then
      renewed[#renewed + 1] = int(NOW + lease)
      renewed[#renewed + 1] = id
      dead[#dead + 1] = id
    else
      gone[#gone + 1] = id
    end
  end
  call_chunked('ZADD', K_DEAD, renewed)
  call_chunked('ZREM', K_DEAD, gone)
end

local leaving = {}    -- ids leaving for the dead-letter outbox
local records = {}    -- HSET arguments: id, new record, ...
local taken = {}      -- ids leaving the free set (only those at or below the head are in it)
local head_before = tonumber(head())
local members = {}    -- ZADD arguments of the claim's message set
local extended = {}   -- ZADD arguments of <Q>:exp for extended expiries
local page = limit
if page < 1 then page = 1 end
local freed = false
if limit > 0 then
  freed = scan_claimable(page, function(id, m)
    if max_count >= 0 and m.n >= max_count then
      leaving[#leaving + 1] = id
      dead[#dead + 1] = id
      return false
    end
    if max_count >= 0 then m.n = m.n + 1 end
    m.c = cid
    if m.e < keep_until then
      m.e = keep_until
      m.t = extended_ttl
      extended[#extended + 1] = int(keep_until)
      extended[#extended + 1] = id
    end
    records[#records + 1] = id
    records[#records + 1] = encode(m)
    if tonumber(m.r) <= head_before then taken[#taken + 1] = id end
    members[#members + 1] = m.r
    members[#members + 1] = id
    claimed[#claimed + 1] = render_claimed(id, m, cid)
    return #claimed >= limit
  end)
end

if #leaving > 0 then
  call_chunked('ZREM', K_MSGS, leaving)
  call_chunked('ZREM', K_EXP, leaving)
  call_chunked('ZREM', K_FREE, leaving)
  local outbox = {}
  for _, id in ipairs(leaving) do
    outbox[#outbox + 1] = int(NOW + lease)
    outbox[#outbox + 1] = id
  end
  call_chunked('ZADD', K_DEAD, outbox)
end

if #claimed > 0 then
  call_chunked('HSET', K_M, records)
  call_chunked('ZREM', K_FREE, taken)
  call_chunked('ZADD', cmkey(cid), members)
  call_chunked('ZADD', K_EXP, extended)
  if #extended > 0 then due_at('de', keep_until) end
  redis.call('HSET', ckey(cid), 't', int(ttl), 'u', NOW_S, 'e', int(ce))
  redis.call('ZADD', K_CLAIMS, int(ce), cid)
  due_at('dc', ce)
  gc_at(ckey(cid), ce)
  gc_at(cmkey(cid), ce)
end
if #leaving > 0 or #stale > 0 then
  gc_queue(keep_until)
else
  -- The claim index is re-created with the first live claim, the wait set
  -- when delayed messages were passed over.
  if #claimed > 0 then gc_queue_lazy(K_CLAIMS, keep_until) end
  if freed then gc_queue_lazy(K_WAIT, keep_until) end
end
return {claimed, dead, ''}
