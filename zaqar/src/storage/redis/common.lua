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
--   <Q>:exp         zset id -> expiry ms    for trimming expired messages
--   <Q>:free        zset id -> rank         messages held by no live claim
--   <Q>:seq         string                  last rank handed out
--   <Q>:claims      zset cid -> expiry ms   live claims
--   <Q>:c:<cid>     hash t (ttl s), u (created/renewed ms), e (expiry ms)
--   <Q>:cm:<cid>    zset id -> rank         the claim's messages
--   <Q>:dead        zset id -> lease ms     outbox of messages leaving for the DLQ
--   <Q>:m:<id>      hash t ttl s, e expiry ms, cr created ms, u client id,
--                   b body (raw JSON), k checksum, c claim id or '',
--                   n claim count, d delayed until ms, r rank

local Q = ARGV[1]
local NOW = tonumber(ARGV[2])
-- Redis may drop a key this long after it is logically dead (GC only).
local GC_MARGIN = 3600000

local K_MSGS = Q .. ':msgs'
local K_EXP = Q .. ':exp'
local K_FREE = Q .. ':free'
local K_SEQ = Q .. ':seq'
local K_CLAIMS = Q .. ':claims'
local K_DEAD = Q .. ':dead'

-- Numbers go to Redis as integer text (never exponent notation).
local function int(x) return string.format('%d', x) end

local function mkey(id) return Q .. ':m:' .. id end
local function ckey(cid) return Q .. ':c:' .. cid end
local function cmkey(cid) return Q .. ':cm:' .. cid end

-- Garbage collection only: let Redis drop `key` a margin after `at_ms`.
local function gc_at(key, at_ms)
  local ttl = at_ms - NOW
  if ttl < 0 then ttl = 0 end
  redis.call('PEXPIRE', key, int(ttl + GC_MARGIN))
end

-- Removes a message from every index and deletes it.
local function remove_message(id)
  local mk = mkey(id)
  local c = redis.call('HGET', mk, 'c')
  if c and c ~= '' then redis.call('ZREM', cmkey(c), id) end
  redis.call('DEL', mk)
  redis.call('ZREM', K_MSGS, id)
  redis.call('ZREM', K_EXP, id)
  redis.call('ZREM', K_FREE, id)
end

-- Forgets claim `cid` and hands its messages back to the free set.
local function drop_claim(cid)
  local ids = redis.call('ZRANGE', cmkey(cid), 0, -1)
  for _, id in ipairs(ids) do
    local mk = mkey(id)
    if redis.call('HGET', mk, 'c') == cid then
      redis.call('HSET', mk, 'c', '')
      local rank = redis.call('ZSCORE', K_MSGS, id)
      if rank then redis.call('ZADD', K_FREE, rank, id) end
    end
  end
  redis.call('DEL', cmkey(cid), ckey(cid))
  redis.call('ZREM', K_CLAIMS, cid)
end

-- Brings the queue to the state of time NOW: expired claims release their
-- messages, expired messages go. Each entry is handled once in its life, so
-- the cost is amortised O(1) per message and claim, with no keyspace scan.
local function normalize()
  while true do
    local cids = redis.call('ZRANGEBYSCORE', K_CLAIMS, '-inf', NOW, 'LIMIT', 0, 100)
    if #cids == 0 then break end
    for _, cid in ipairs(cids) do drop_claim(cid) end
  end
  while true do
    local ids = redis.call('ZRANGEBYSCORE', K_EXP, '-inf', NOW, 'LIMIT', 0, 200)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do remove_message(id) end
  end
end

-- After a write: the queue-level keys may be dropped by Redis a margin
-- after the last message and the last claim are logically dead.
local function gc_queue()
  local horizon = nil
  local last = redis.call('ZRANGE', K_EXP, -1, -1, 'WITHSCORES')
  if last[2] then horizon = tonumber(last[2]) end
  local lastc = redis.call('ZRANGE', K_CLAIMS, -1, -1, 'WITHSCORES')
  if lastc[2] and (not horizon or tonumber(lastc[2]) > horizon) then
    horizon = tonumber(lastc[2])
  end
  if horizon then
    for _, k in ipairs({K_MSGS, K_EXP, K_FREE, K_SEQ, K_CLAIMS, K_DEAD}) do
      gc_at(k, horizon)
    end
  end
end

-- The fields a reader needs, or nil when the message is not in this queue.
local FIELDS = {'t', 'cr', 'b', 'c', 'n', 'k', 'e', 'd', 'u', 'r'}
local function load(id)
  if not redis.call('ZSCORE', K_MSGS, id) then return nil end
  local f = redis.call('HMGET', mkey(id), unpack(FIELDS))
  if not f[1] then
    -- The hash was garbage-collected: the message is gone.
    remove_message(id)
    return nil
  end
  return {t = tonumber(f[1]), cr = f[2], b = f[3], c = f[4] or '', n = tonumber(f[5] or '0'),
          k = f[6] or '', e = tonumber(f[7]), d = tonumber(f[8] or '0'), u = f[9] or '',
          r = f[10]}
end

-- Wire form of a message: {id, ttl, created_ms, body, claim_id|'', claim_count, checksum|''}.
local function render(id, m)
  return {id, int(m.t), m.cr, m.b, m.c, int(m.n), m.k}
end

-- Claimable = held by no live claim (after normalize: in the free set) and
-- not delayed. Calls visit(id, m) in rank order until it returns true.
local function scan_claimable(visit)
  local start = '-inf'
  while true do
    local batch = redis.call('ZRANGEBYSCORE', K_FREE, start, '+inf', 'WITHSCORES', 'LIMIT', 0, 100)
    if #batch == 0 then return end
    for i = 1, #batch, 2 do
      local id = batch[i]
      start = '(' .. batch[i + 1]
      local m = load(id)
      if m and m.d <= NOW then
        if visit(id, m) then return end
      end
    end
  end
end
