-- Shared prelude of every per-queue script (prepended in Rust with concat!).
--
-- Calling convention: KEYS[1] = <Q>:msgs (routes the call on Redis Cluster;
-- every other key of the queue shares its hash tag, so the same slot),
-- ARGV[1] = <Q> (the queue's key prefix), ARGV[2] = now in ms from the
-- server's injected clock. Redis' own clock is never read: all expiry logic
-- uses NOW, and PEXPIRE is only garbage collection with a wide margin.
--
-- Keys of one queue (<Q> = <prefix>:q{<plen>:<project>:<qlen>:<queue>}):
--   <Q>:msgs        zset id -> rank         every live message, insertion order
--   <Q>:exp         zset -> expiry ms       for trimming expired messages: members
--                   'r:<first>:<last>' (a run of messages posted together with one
--                   expiry, by rank) or a message id (an expiry a claim extended,
--                   a dead letter's); a run is a bound, the record's own expiry rules
--   <Q>:free        zset id -> rank         messages at or below the head held by no
--                                           live claim (released, or passed over while
--                                           delayed); every message above the head is
--                                           unclaimed, so a post writes no entry here
--   <Q>:m           hash id -> record       every message (live, or leaving for the DLQ)
--   <Q>:seq         hash last (last rank handed out), head (the highest rank a
--                   claim or pop has looked at)
--   <Q>:claims      zset cid -> expiry ms   live claims
--   <Q>:c:<cid>     hash t (ttl s), u (created/renewed ms), e (expiry ms)
--   <Q>:cm:<cid>    zset id -> rank         the claim's messages
--   <Q>:dead        zset id -> lease ms     outbox of messages leaving for the DLQ
--
-- A record is the MessagePack sequence (ttl s, expiry ms, created ms, client
-- id, body as raw JSON text, checksum or '', claim id or '', claim count,
-- delayed until ms); the rank is the message's score in <Q>:msgs. One hash
-- per queue (not one per message) keeps a post to a handful of calls
-- whatever the batch size: every redis.call from Lua costs about as much
-- as a small command.

local Q = ARGV[1]
local NOW = tonumber(ARGV[2])
-- Redis may drop a key this long after it is logically dead (GC only).
local GC_MARGIN = 3600000

local K_MSGS = Q .. ':msgs'
local K_EXP = Q .. ':exp'
local K_FREE = Q .. ':free'
local K_M = Q .. ':m'
local K_SEQ = Q .. ':seq'
local K_CLAIMS = Q .. ':claims'
local K_DEAD = Q .. ':dead'

-- Numbers go to Redis as integer text (never exponent notation).
local function int(x) return string.format('%d', x) end

local function ckey(cid) return Q .. ':c:' .. cid end
local function cmkey(cid) return Q .. ':cm:' .. cid end

-- Garbage collection only: let Redis drop `key` a margin after `at_ms`.
local function gc_at(key, at_ms)
  local ttl = at_ms - NOW
  if ttl < 0 then ttl = 0 end
  redis.call('PEXPIRE', key, int(ttl + GC_MARGIN))
end

-- Splits a WITHSCORES reply into its members and their scores.
local function split_scored(reply)
  local members, scores = {}, {}
  for i = 1, #reply, 2 do
    members[#members + 1] = reply[i]
    scores[#scores + 1] = reply[i + 1]
  end
  return members, scores
end

local function decode(rec, rank)
  local t, e, cr, u, b, k, c, n, d = cmsgpack.unpack(rec)
  return {t = t, e = e, cr = cr, u = u, b = b, k = k, c = c, n = n, d = d, r = rank}
end

local function encode(m)
  return cmsgpack.pack(m.t, m.e, m.cr, m.u, m.b, m.k, m.c, m.n, m.d)
end

-- Removes messages from every index and deletes them. `claims` maps each id
-- to its claim id ('' when unclaimed) when the caller knows it.
local function remove_messages(ids, claims)
  if #ids == 0 then return end
  if not claims then
    claims = {}
    local recs = redis.call('HMGET', K_M, unpack(ids))
    for i, id in ipairs(ids) do
      if recs[i] then claims[id] = decode(recs[i]).c else claims[id] = '' end
    end
  end
  for _, id in ipairs(ids) do
    local c = claims[id]
    if c and c ~= '' then redis.call('ZREM', cmkey(c), id) end
  end
  redis.call('HDEL', K_M, unpack(ids))
  redis.call('ZREM', K_MSGS, unpack(ids))
  redis.call('ZREM', K_EXP, unpack(ids))
  redis.call('ZREM', K_FREE, unpack(ids))
end

local function remove_message(id, claim)
  local claims = nil
  if claim then claims = {[id] = claim} end
  remove_messages({id}, claims)
end

-- The records of `ids` (in order; nil for a message that is not live in
-- this queue). `ranks[i]`, when given, is the rank of ids[i] read from an
-- index; otherwise it is looked up.
local function load_many(ids, ranks)
  local out = {}
  if #ids == 0 then return out end
  local recs = redis.call('HMGET', K_M, unpack(ids))
  local gone = {}
  for i, id in ipairs(ids) do
    local rank = ranks and ranks[i]
    if not rank then rank = redis.call('ZSCORE', K_MSGS, id) end
    if rank and recs[i] then
      out[i] = decode(recs[i], rank)
    elseif rank then
      -- The record was garbage-collected: the message is gone.
      gone[#gone + 1] = id
    end
  end
  if #gone > 0 then remove_messages(gone, {}) end
  return out
end

-- The queue-level keys may be dropped by Redis a margin after the last
-- message and the last claim are logically dead (`at_least`: an expiry the
-- caller just wrote). Every key gets the same deadline, two margins out.
local function gc_queue(at_least)
  local horizon = at_least or NOW
  local last = redis.call('ZRANGE', K_EXP, -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) > horizon then horizon = tonumber(last[2]) end
  local lastc = redis.call('ZRANGE', K_CLAIMS, -1, -1, 'WITHSCORES')
  if lastc[2] and tonumber(lastc[2]) > horizon then horizon = tonumber(lastc[2]) end
  for _, k in ipairs({K_MSGS, K_EXP, K_FREE, K_M, K_SEQ, K_CLAIMS, K_DEAD}) do
    gc_at(k, horizon + GC_MARGIN)
  end
end

-- After a write that may have created queue keys or moved an expiry to
-- `at_ms`: one PTTL on `probe` tells whether the keys already outlive it
-- by a margin; only when not (or when `probe` was just created, hence has no
-- expiry) do all the keys get a new deadline. `probe` must be a key that is
-- re-created whenever any other queue key is.
local function gc_queue_lazy(probe, at_ms)
  local pttl = redis.call('PTTL', probe)
  if pttl < 0 or NOW + pttl < at_ms + GC_MARGIN then gc_queue(at_ms) end
end

-- Forgets claim `cid` and hands its messages back to the free set.
local function drop_claim(cid)
  local ids = redis.call('ZRANGE', cmkey(cid), 0, -1)
  if #ids > 0 then
    local recs = redis.call('HMGET', K_M, unpack(ids))
    local free = {}
    local hset = {}
    for i, id in ipairs(ids) do
      if recs[i] then
        local m = decode(recs[i])
        if m.c == cid then
          local rank = redis.call('ZSCORE', K_MSGS, id)
          if rank then
            m.c = ''
            hset[#hset + 1] = id
            hset[#hset + 1] = encode(m)
            free[#free + 1] = rank
            free[#free + 1] = id
          end
        end
      end
    end
    if #hset > 0 then redis.call('HSET', K_M, unpack(hset)) end
    if #free > 0 then redis.call('ZADD', K_FREE, unpack(free)) end
  end
  redis.call('DEL', cmkey(cid), ckey(cid))
  redis.call('ZREM', K_CLAIMS, cid)
  return #ids > 0
end

-- Brings the queue to the state of time NOW: expired claims release their
-- messages, expired messages go. Each entry is handled once in its life, so
-- the cost is amortised O(1) per message and claim, with no keyspace scan.
local function normalize()
  local released = false
  while true do
    local cids = redis.call('ZRANGEBYSCORE', K_CLAIMS, '-inf', NOW, 'LIMIT', 0, 100)
    if #cids == 0 then break end
    for _, cid in ipairs(cids) do
      if drop_claim(cid) then released = true end
    end
  end
  -- Released messages may have re-created the free set without an expiry.
  if released then gc_queue_lazy(K_FREE, NOW) end
  while true do
    local due = redis.call('ZRANGEBYSCORE', K_EXP, '-inf', NOW, 'LIMIT', 0, 200)
    if #due == 0 then break end
    local ids, runs = {}, {}
    for _, member in ipairs(due) do
      local a, b = string.match(member, '^r:(%d+):(%d+)$')
      if a then
        runs[#runs + 1] = member
        -- Messages of the run still here; a claim may have extended some
        -- (they have an entry of their own then), so their records decide.
        local cand, ranks = split_scored(redis.call('ZRANGEBYSCORE', K_MSGS, a, b, 'WITHSCORES'))
        local ms = load_many(cand, ranks)
        for i, id in ipairs(cand) do
          if ms[i] and ms[i].e <= NOW then ids[#ids + 1] = id end
        end
      else
        ids[#ids + 1] = member
      end
    end
    remove_messages(ids)
    if #runs > 0 then redis.call('ZREM', K_EXP, unpack(runs)) end
  end
end

-- The record of one message, or nil when it is not live in this queue.
local function load(id)
  return load_many({id})[1]
end

-- Wire form of a message: {id, ttl, created_ms, body, claim_id|'', claim_count, checksum|''}.
local function render(id, m)
  return {id, int(m.t), int(m.cr), m.b, m.c, int(m.n), m.k}
end

-- Walks `index` (a zset scored by rank) from `start` in rank order, loading
-- records a page at a time, and calls visit(id, m) for each live message
-- until it returns true (then scan returns true). `page` bounds the records
-- read per call.
local function scan(index, start, page, visit)
  while true do
    local batch = redis.call('ZRANGEBYSCORE', index, start, '+inf', 'WITHSCORES', 'LIMIT', 0, page)
    if #batch == 0 then return false end
    local ids, ranks = split_scored(batch)
    local ms = load_many(ids, ranks)
    for i, id in ipairs(ids) do
      start = '(' .. ranks[i]
      local m = ms[i]
      if m and visit(id, m) then return true end
    end
    if #batch < 2 * page then return false end
    if page < 100 then page = page * 2 end
  end
end

local function head()
  return redis.call('HGET', K_SEQ, 'head') or '0'
end

-- Unclaimed messages from `start` ('-inf' or '(' .. rank) in rank order:
-- the free set (all at or below the head), then every message above it.
local function scan_unclaimed(start, page, visit)
  if scan(K_FREE, start, page, visit) then return end
  local h = head()
  local from = '(' .. h
  if start ~= '-inf' and tonumber(string.sub(start, 2)) > tonumber(h) then from = start end
  scan(K_MSGS, from, page, visit)
end

-- Claimable = held by no live claim and not delayed. Calls visit(id, m) in
-- rank order until it returns true; each message visited is taken (claimed,
-- popped or dead-lettered) by the caller. Above the head, the messages
-- passed over (delayed) join the free set and the head moves up to the last
-- message looked at. Returns true when the free set was written to.
local function scan_claimable(page, visit)
  local function claimable(id, m)
    if m.d <= NOW then return visit(id, m) end
    return false
  end
  if scan(K_FREE, '-inf', page, claimable) then return false end
  local passed, last = {}, nil
  scan(K_MSGS, '(' .. head(), page, function(id, m)
    last = m.r
    if m.d <= NOW then return visit(id, m) end
    passed[#passed + 1] = m.r
    passed[#passed + 1] = id
    return false
  end)
  if last then redis.call('HSET', K_SEQ, 'head', last) end
  if #passed > 0 then
    redis.call('ZADD', K_FREE, unpack(passed))
    return true
  end
  return false
end
