-- Shared prelude of every per-queue script: the head of the function
-- library (library.rs) on Redis 7, so its helpers are built once per Redis
-- node and not on every call; prepended to each script for EVALSHA (Redis 6).
-- Either way a call starts with begin(ARGV), which sets this call's state
-- (the variables below that hold the queue's keys, NOW, what was read of
-- <Q>:seq, the claim cache): nothing of one call is seen by the next.
--
-- Calling convention: KEYS[1] = <Q>:msgs (routes the call on Redis Cluster;
-- every other key of the queue shares its hash tag, so the same slot),
-- KEYS[2] = <Q>:guard (never written: while the slot moves between masters,
-- Redis refuses the call on both before it runs; see keys.rs),
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
--                                           live claim and claimable (released, or
--                                           come due); every message above the head is
--                                           unclaimed, so a post writes no entry here
--   <Q>:wait        zset '<rank>:<id>' -> due ms  messages at or below the head
--                                           passed over while delayed, until their delay
--                                           ends (then normalize moves them to <Q>:free,
--                                           a chunk per call, by due time then rank: the
--                                           member starts with the rank, zero-padded), so
--                                           that claims never walk past them again
--   <Q>:m           hash id -> record       every message (live, or leaving for the DLQ)
--   <Q>:seq         hash last (last rank handed out), head (the highest rank a
--                   claim or pop has looked at), and when normalize() next has
--                   work in each index it collects from (ms; see DUE_RECHECK):
--                   dc (<Q>:claims), dw (<Q>:wait), de (<Q>:exp)
--   <Q>:claims      zset cid -> expiry ms   live claims
--   <Q>:c:<cid>     hash t (ttl s), u (created/renewed ms), e (expiry ms)
--   <Q>:cm:<cid>    zset id -> rank         the claim's messages
--   <Q>:dead        zset id -> lease ms     outbox of messages leaving for the DLQ
--   <Q>:spill:<id>  list                    a long list argument the server wrote
--                                           just before the script (see arg_list)
--   <Q>:polled      string, with a TTL      exists while a long poll of some server
--                                           process waits for the queue: posts publish
--                                           their wake-up only then (wake_expect.lua)
--
-- A record is the MessagePack sequence (ttl s, expiry ms, created ms, client
-- id, body as raw JSON text, checksum or '', claim id or '', claim count,
-- delayed until ms); the rank is the message's score in <Q>:msgs. One hash
-- per queue (not one per message) keeps a post to a handful of calls
-- whatever the batch size: every redis.call from Lua costs about as much
-- as a small command.
--
-- Limits (the same numbers are in mod.rs, "Limits"):
--   * no Redis command built here takes more than CHUNK values from a
--     list (Lua's unpack stops near 8,000, and a script error after a
--     write does not roll it back);
--   * every number a script is given is checked before its first write
--     (arg_int): integers only, times within [0, MAX_TIME];
--   * one call spends at most GC_BUDGET units collecting expired messages
--     and releasing expired claims (the rest on the next calls: readers
--     skip what expired meanwhile), and reads at most SCAN_BUDGET records
--     walking an index.

-- Values per Redis command built from a list; even, so (score, member) and
-- (field, value) pairs are never split.
local CHUNK = 1000
-- Garbage collection per call, in units: an expired message above the
-- head costs 1 (never claimed, so its record need not be read), any other
-- expired message or released claim message costs GC_READ. About 10 ms of
-- Redis time at most either way.
local GC_BUDGET = 10000
local GC_READ = 4
-- Records a call reads while walking an index (claims, pops, listings).
local SCAN_BUDGET = 10000
-- The latest time any script accepts or writes (ms): 9999-12-31T23:59:59.999Z,
-- storage::deadline::MAX_DEADLINE_MS; exact as a Lua number (below 2^53).
local MAX_TIME = 253402300799999
-- The longest duration in seconds that fits before MAX_TIME (stored ttls):
-- floor(MAX_TIME / 1000), written out because a function library's code
-- runs at load time without Lua's libraries (math and the rest).
local MAX_SECS = 253402300799
-- Redis may drop a key this long after it is logically dead (GC only).
local GC_MARGIN = 3600000
-- normalize() looks at an index it collects from only once the time <Q>:seq
-- keeps for it has come, and then keeps the index's next time, but never
-- more than this many ms ahead: a writer that added an earlier entry
-- without lowering the time (an earlier release, during an upgrade) delays
-- the collection by this much at most.
local DUE_RECHECK = 1000

-- Numbers go to Redis as integer text (never exponent notation). Only ever
-- called on integers within [-2^53, 2^53]: every input is checked by
-- arg_int and sums of them stay far below 2^53.
local function int(x) return string.format('%d', x) end

-- ARGV[i] as an integer within [lo, hi]; anything else (text, a fraction,
-- nan, inf, out of range) stops the script. Called before the first write.
local ARGS = nil
local function arg_int(i, lo, hi)
  local v = tonumber(ARGS[i])
  if v == nil or v ~= v or v < lo or v > hi or v ~= math.floor(v) then
    error('argument ' .. i .. ' must be an integer within [' .. int(lo) .. ', ' .. int(hi) ..
          '], got ' .. tostring(ARGS[i]))
  end
  return v
end

-- This call's queue: Q = ARGV[1], NOW = ARGV[2], and the queue's keys.
local Q, NOW, K_MSGS, K_EXP, K_FREE, K_WAIT, K_M, K_SEQ, K_CLAIMS, K_DEAD
-- NOW as Redis arguments take it. A Lua number given to redis.call is
-- formatted with '%.17g' on every call, which costs more than the rest of
-- the argument handling: numbers go to Redis as text made once.
local NOW_S

-- What this call knows of <Q>:seq: the head, the times of the indexes
-- normalize() collects from (a missing time is 0: look now), and whether
-- the hash exists (every write of it sets 'last' first). Read once, by the
-- first call that needs any of it.
local HEAD, DUE, SEQ_EXISTS

-- Whether claim `cid` is live, by claim id, as claim_live() found it (nil
-- until it first looks).
local live_claims

-- Starts a call: `argv` is its ARGV. Every script runs it first.
local function begin(argv)
  ARGS = argv
  Q = argv[1]
  NOW = arg_int(2, 0, MAX_TIME)
  NOW_S = int(NOW)
  K_MSGS = Q .. ':msgs'
  K_EXP = Q .. ':exp'
  K_FREE = Q .. ':free'
  K_WAIT = Q .. ':wait'
  K_M = Q .. ':m'
  K_SEQ = Q .. ':seq'
  K_CLAIMS = Q .. ':claims'
  K_DEAD = Q .. ':dead'
  HEAD, DUE, SEQ_EXISTS = nil, nil, false
  live_claims = nil
end

local function load_seq()
  if HEAD == nil then
    local v = redis.call('HMGET', K_SEQ, 'head', 'dc', 'dw', 'de', 'last')
    HEAD = v[1] or '0'
    DUE = {dc = tonumber(v[2]) or 0, dw = tonumber(v[3]) or 0, de = tonumber(v[4]) or 0}
    SEQ_EXISTS = v[5] ~= false
  end
end

-- The highest rank a claim or pop has looked at: every message above it is
-- unclaimed and was never claimed.
local function head()
  load_seq()
  return HEAD
end

-- For a script adding an entry due at `at` ms to the index whose time is
-- `field` ('dc' <Q>:claims, 'dw' <Q>:wait, 'de' <Q>:exp): brings that time
-- forward when the entry is due sooner. Every such write must call it.
local function due_at(field, at)
  load_seq()
  at = tonumber(at)
  if at < DUE[field] then
    DUE[field] = at
    redis.call('HSET', K_SEQ, field, int(at))
  end
end

-- redis.call(cmd, key, values...) for `list` in chunks of at most CHUNK values.
local function call_chunked(cmd, key, list)
  for lo = 1, #list, CHUNK do
    redis.call(cmd, key, unpack(list, lo, math.min(lo + CHUNK - 1, #list)))
  end
end

-- A list argument of `count` values: ARGV[first..first+count-1] or, when the
-- caller spilled it (`spill`, a list key of this queue written just
-- before), that list. Checks its length before any write and returns
-- slice(lo, hi): values lo..hi (1-based; callers ask for at most CHUNK).
local function arg_list(spill, first, count)
  if spill == '' then
    if #ARGS < first + count - 1 then error('missing list arguments') end
    return function(lo, hi)
      local out = {}
      for i = lo, hi do out[#out + 1] = ARGS[first + i - 1] end
      return out
    end
  end
  if string.sub(spill, 1, #Q + 7) ~= Q .. ':spill:' then error('foreign spill key') end
  if redis.call('LLEN', spill) ~= count then error('spilled list is incomplete') end
  return function(lo, hi) return redis.call('LRANGE', spill, lo - 1, hi - 1) end
end

-- Garbage collection only: let Redis drop `key` a margin after `at_ms`.
local function gc_at(key, at_ms)
  local ttl = at_ms - NOW
  if ttl < 0 then ttl = 0 end
  redis.call('PEXPIRE', key, int(ttl + GC_MARGIN))
end

-- The queue-level keys may be dropped by Redis a margin after the last
-- message and the last claim are logically dead (`at_least`: an expiry the
-- caller just wrote). Every key gets the same deadline, two margins out.
local function gc_queue(at_least)
  local horizon = at_least or NOW
  local last = redis.call('ZRANGE', K_EXP, '-1', '-1', 'WITHSCORES')
  if last[2] and tonumber(last[2]) > horizon then horizon = tonumber(last[2]) end
  local lastc = redis.call('ZRANGE', K_CLAIMS, '-1', '-1', 'WITHSCORES')
  if lastc[2] and tonumber(lastc[2]) > horizon then horizon = tonumber(lastc[2]) end
  for _, k in ipairs({K_MSGS, K_EXP, K_FREE, K_WAIT, K_M, K_SEQ, K_CLAIMS, K_DEAD}) do
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

-- The helpers that read and write records, claims and indexes, and the
-- collection itself. Run as EVALSHA, Lua builds every function a script
-- defines again on each call (about 1,500 Redis instructions each), and a
-- post with nothing due calls none of these: records() builds them, once
-- per call (once per library load as functions), and every script that
-- calls one of them runs it first (begin_scan in scan.lua does, for the
-- scripts that carry it); normalize() runs it when something is due.
local wait_member, ckey, cmkey, set_head, hmget, split_scored, decode, encode
local claim_live, remove_messages, remove_message, load_raw, load_many
local drop_claim, next_due, collect, load, claim_of, render, render_claimed
local built = false
local function records()
  if built then return end
  built = true
  -- The <Q>:wait member of message `id` of rank `rank`.
  function wait_member(rank, id) return string.format('%020d', tonumber(rank)) .. ':' .. id end

  function ckey(cid) return Q .. ':c:' .. cid end

  function cmkey(cid) return Q .. ':cm:' .. cid end

  function set_head(rank)
    load_seq()
    redis.call('HSET', K_SEQ, 'head', rank)
    HEAD = rank
  end

  -- HMGET in chunks: the values of `fields` in order (false when missing).
  function hmget(key, fields)
    local out = {}
    for lo = 1, #fields, CHUNK do
      local part = redis.call('HMGET', key, unpack(fields, lo, math.min(lo + CHUNK - 1, #fields)))
      for i = 1, #part do out[lo + i - 1] = part[i] end
    end
    return out
  end

  -- Splits a WITHSCORES reply into its members and their scores.
  function split_scored(reply)
    local members, scores = {}, {}
    for i = 1, #reply, 2 do
      members[#members + 1] = reply[i]
      scores[#scores + 1] = reply[i + 1]
    end
    return members, scores
  end

  function decode(rec, rank)
    local t, e, cr, u, b, k, c, n, d = cmsgpack.unpack(rec)
    return {t = t, e = e, cr = cr, u = u, b = b, k = k, c = c, n = n, d = d, r = rank}
  end

  function encode(m)
    return cmsgpack.pack(m.t, m.e, m.cr, m.u, m.b, m.k, m.c, m.n, m.d)
  end

  -- Whether claim `cid` is live (listed with an expiry after NOW). A claim
  -- that expired stays listed until the collection in normalize() reaches
  -- it, so its id on a message proves nothing by itself. Cached per call.
  function claim_live(cid)
    if cid == nil or cid == '' then return false end
    if live_claims == nil then live_claims = {} end
    local live = live_claims[cid]
    if live == nil then
      local score = redis.call('ZSCORE', K_CLAIMS, cid)
      live = (score and tonumber(score) > NOW) and true or false
      live_claims[cid] = live
    end
    return live
  end

  -- Removes messages from every index and deletes them. `claims` maps each id
  -- to its claim id ('' when unclaimed) when the caller knows it.
  function remove_messages(ids, claims)
    if #ids == 0 then return end
    if redis.call('EXISTS', K_WAIT) == 1 then
      local waiting = {}
      for _, id in ipairs(ids) do
        local rank = redis.call('ZSCORE', K_MSGS, id)
        if rank then waiting[#waiting + 1] = wait_member(rank, id) end
      end
      call_chunked('ZREM', K_WAIT, waiting)
    end
    if not claims then
      claims = {}
      local recs = hmget(K_M, ids)
      for i, id in ipairs(ids) do
        if recs[i] then claims[id] = decode(recs[i]).c else claims[id] = '' end
      end
    end
    -- One ZREM per claim (a consumer deletes what one claim gave it).
    local held = {}
    for _, id in ipairs(ids) do
      local c = claims[id]
      if c and c ~= '' then
        local of_claim = held[c]
        if not of_claim then
          of_claim = {}
          held[c] = of_claim
        end
        of_claim[#of_claim + 1] = id
      end
    end
    for c, of_claim in pairs(held) do call_chunked('ZREM', cmkey(c), of_claim) end
    call_chunked('HDEL', K_M, ids)
    call_chunked('ZREM', K_MSGS, ids)
    call_chunked('ZREM', K_EXP, ids)
    call_chunked('ZREM', K_FREE, ids)
  end

  function remove_message(id, claim)
    local claims = nil
    if claim then claims = {[id] = claim} end
    remove_messages({id}, claims)
  end

  -- The records of `ids` (in order; nil for a message that is not in this
  -- queue), expired ones included (garbage collection reads these).
  -- `ranks[i]`, when given, is the rank of ids[i] read from an index;
  -- otherwise it is looked up.
  function load_raw(ids, ranks)
    local out = {}
    if #ids == 0 then return out end
    local recs = hmget(K_M, ids)
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

  -- load_raw for readers: a message that expired (and that the collection
  -- has not reached yet) is nil, as if gone.
  function load_many(ids, ranks)
    local out = load_raw(ids, ranks)
    for i = 1, #ids do
      if out[i] and out[i].e <= NOW then out[i] = nil end
    end
    return out
  end

  -- Forgets claim `cid` and hands its messages back to the free set; returns
  -- how many messages it held. The work is that of the claim's creation
  -- (its size is bounded by the claim limit).
  function drop_claim(cid)
    -- The claim's set holds its live messages, scored by rank (deleting a
    -- message takes it out of the set too).
    local ids, ranks = split_scored(redis.call('ZRANGE', cmkey(cid), '0', '-1', 'WITHSCORES'))
    if #ids > 0 then
      local recs = hmget(K_M, ids)
      local free = {}
      local hset = {}
      for i, id in ipairs(ids) do
        if recs[i] then
          local m = decode(recs[i])
          if m.c == cid then
            m.c = ''
            hset[#hset + 1] = id
            hset[#hset + 1] = encode(m)
            free[#free + 1] = ranks[i]
            free[#free + 1] = id
          end
        end
      end
      call_chunked('HSET', K_M, hset)
      call_chunked('ZADD', K_FREE, free)
    end
    redis.call('DEL', cmkey(cid), ckey(cid))
    redis.call('ZREM', K_CLAIMS, cid)
    if live_claims then live_claims[cid] = false end
    return #ids
  end

  -- The time to keep for index `key` once normalize() has collected from it:
  -- its earliest entry's, at most DUE_RECHECK ms ahead.
  function next_due(key)
    local first = redis.call('ZRANGE', key, '0', '0', 'WITHSCORES')
    local at = NOW + DUE_RECHECK
    if first[2] and tonumber(first[2]) < at then at = tonumber(first[2]) end
    return at
  end

  -- The record of one live message, or nil when it is not live in this queue.
  function load(id)
    return load_many({id})[1]
  end

  -- The claim holding `m`, or '' when none does (any more).
  function claim_of(m)
    if claim_live(m.c) then return m.c end
    return ''
  end

  -- Wire form of a message: one MessagePack sequence (id, ttl, created ms,
  -- body, claim id or '', claim count, checksum or ''), so that a reply of
  -- many messages is one bulk string per message: the server's RESP parser
  -- spends per value, not per byte (to_message in mod.rs reads it).
  function render(id, m)
    return render_claimed(id, m, claim_of(m))
  end

  -- render() for a message held by claim `cid` (or '').
  function render_claimed(id, m, cid)
    return cmsgpack.pack(id, tonumber(m.t), tonumber(m.cr), m.b, cid, tonumber(m.n), m.k or '')
  end

  -- The work of normalize() once something is due.
  function collect()
    local budget = GC_BUDGET
    local released = false
    -- HSET arguments: the indexes' new times. Kept only in a <Q>:seq that
    -- exists (SEQ_EXISTS): a queue that never had a message gets no key,
    -- and its indexes (empty) are looked at again on every call.
    local times = {}
    local function keep(field, key)
      if not SEQ_EXISTS then return end
      local at = next_due(key)
      if at ~= DUE[field] then
        DUE[field] = at
        times[#times + 1] = field
        times[#times + 1] = int(at)
      end
    end
    if DUE.dc <= NOW then
      while budget > 0 do
        local cids = redis.call('ZRANGEBYSCORE', K_CLAIMS, '-inf', NOW_S, 'LIMIT', '0', '100')
        for _, cid in ipairs(cids) do
          local n = drop_claim(cid)
          if n > 0 then released = true end
          budget = budget - GC_READ * math.max(n, 1)
          if budget <= 0 then break end
        end
        if #cids < 100 then break end
      end
      keep('dc', K_CLAIMS)
    end
    -- Passed-over messages whose delay has ended become claimable (a chunk
    -- per call; what is left waits for the next call).
    if DUE.dw <= NOW then
      local due = redis.call('ZRANGEBYSCORE', K_WAIT, '-inf', NOW_S, 'LIMIT', '0', int(CHUNK))
      if #due > 0 then
        local free = {}
        for _, member in ipairs(due) do
          local id = string.match(member, '^%d+:(.+)$')
          local rank = id and redis.call('ZSCORE', K_MSGS, id)
          if rank then
            free[#free + 1] = rank
            free[#free + 1] = id
          end
        end
        call_chunked('ZADD', K_FREE, free)
        call_chunked('ZREM', K_WAIT, due)
        if #free > 0 then released = true end
      end
      keep('dw', K_WAIT)
    end
    -- Released messages may have re-created the free set without an expiry.
    if released then gc_queue_lazy(K_FREE, NOW) end
    if DUE.de <= NOW and budget > 0 then
      local h = tonumber(HEAD)
      while budget > 0 do
        local due = redis.call('ZRANGEBYSCORE', K_EXP, '-inf', NOW_S, 'WITHSCORES', 'LIMIT', '0',
                                '100')
        local members, scores = split_scored(due)
        local ids, claims = {}, {}
        local singles = {}
        -- Whether a run was left partly collected (its rest is due again).
        local rest_left = false
        for j, member in ipairs(members) do
          if budget < GC_READ then
            budget = 0
            break
          end
          local a, b = string.match(member, '^r:(%d+):(%d+)$')
          if a then
            -- Messages of the run still here, a chunk at a time. Above the
            -- head a message was never claimed, so never extended: the run's
            -- expiry is its own. At or below it, a claim may have extended
            -- some (they have an entry of their own then): their records decide.
            local want = math.min(math.floor(budget / GC_READ), CHUNK)
            if tonumber(a) > h then want = math.min(budget, CHUNK) end
            local cand, ranks = split_scored(redis.call('ZRANGEBYSCORE', K_MSGS, a, b, 'WITHSCORES',
                                                        'LIMIT', '0', int(want)))
            local blind, read, read_ranks = {}, {}, {}
            for i, id in ipairs(cand) do
              if tonumber(ranks[i]) > h then
                blind[#blind + 1] = id
              else
                read[#read + 1] = id
                read_ranks[#read_ranks + 1] = ranks[i]
              end
            end
            local ms = load_raw(read, read_ranks)
            for i, id in ipairs(read) do
              if ms[i] and ms[i].e <= NOW then
                ids[#ids + 1] = id
                claims[id] = ms[i].c
              end
            end
            call_chunked('HDEL', K_M, blind)
            call_chunked('ZREM', K_MSGS, blind)
            budget = budget - math.max(#blind + GC_READ * #read, 1)
            redis.call('ZREM', K_EXP, member)
            if #cand == want then
              -- The rest of the run waits for the next round (or call).
              local rest = tonumber(ranks[#ranks]) + 1
              if rest <= tonumber(b) then
                redis.call('ZADD', K_EXP, scores[j], 'r:' .. int(rest) .. ':' .. b)
                rest_left = true
              end
            end
          else
            singles[#singles + 1] = member
            budget = budget - GC_READ
          end
        end
        remove_messages(ids, claims)
        remove_messages(singles)
        if #members < 100 and not rest_left then break end
      end
      keep('de', K_EXP)
    end
    if #times > 0 then redis.call('HSET', K_SEQ, unpack(times)) end
  end
end

-- Brings the queue towards the state of time NOW: expired claims release
-- their messages, expired messages go. Each entry is handled once in its
-- life, so the cost is amortised O(1) per message and claim, with no
-- keyspace scan; one call does at most GC_BUDGET messages' worth (plus one
-- claim, whatever its size) and leaves the rest to the next calls. Readers
-- never rely on it having finished: load_many hides expired messages and
-- claim_live checks a claim's own expiry. An index is only looked at once
-- its time in <Q>:seq has come (see DUE_RECHECK): most calls read that
-- hash and nothing else here.
local function normalize()
  load_seq()
  if DUE.dc > NOW and DUE.dw > NOW and DUE.de > NOW then return end
  records()
  collect()
end
