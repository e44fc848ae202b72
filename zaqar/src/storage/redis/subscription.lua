-- Subscriptions of one queue, under the queue's hash tag (the same slot as
-- its messages). KEYS[1] = <Q>:msgs routes the call, KEYS[2] = <Q>:guard
-- (never written; see keys.rs); ARGV[1] = <Q>,
-- ARGV[2] = now in ms (the server's injected clock), ARGV[3] = operation,
-- then its arguments:
--   list marker limit                   -> rows
--   list_confirmed marker limit         -> {'indexed', rows} | {'unindexed', {}}
--   get id                              -> rows (0 or 1)
--   by_subscriber uri                   -> rows (0 or 1)
--   create id uri ttl expires options   -> 'ok' | 'exists'
--   update id has_uri uri has_ttl ttl expires has_options options
--                                       -> 'ok' | 'not_found' | 'exists'
--   delete id                           -> 'ok'
--   confirm id 0|1                      -> 'ok' | 'not_found'
--   purge                               -> 'ok' | 'more' (PURGE_BUDGET gone,
--                                          call again)
-- A row is {id, subscriber, ttl, expires ms, options JSON, confirmed 0|1}.
--
-- Keys (<Q> as in common.lua):
--   <Q>:subs      zset id -> creation rank   live subscriptions, list order
--   <Q>:subexp    zset id -> expiry ms       for trimming expired ones
--   <Q>:subpend   zset id -> expiry ms       the unconfirmed ones among them
--                                            (a post counts both, see post.lua;
--                                            one written before this index
--                                            existed is missing: counted as
--                                            confirmed, never the reverse)
--   <Q>:subok     zset id -> creation rank   the confirmed ones, list order;
--                                            <Q>:subs is the union of the two
--                                            unless some were written before
--                                            one of them existed (then
--                                            list_confirmed sorts them first)
--   <Q>:suburi    hash subscriber -> id      the unique-subscriber index
--   <Q>:subseq    string                     last rank handed out
--   <Q>:s:<id>    hash s subscriber, t ttl s, e expiry ms, o options, c 0|1
--
-- Expiry follows NOW only; PEXPIRE (expiry plus an hour) merely lets Redis
-- drop what nobody touches any more. A call removes at most PRUNE_BUDGET
-- expired subscriptions (the rest on the next calls; every reader checks
-- the expiry itself meanwhile), and every number it is given is checked
-- before its first write.

local GC_MARGIN = 3600000
-- Beyond this (ms from now) a key is kept without a Redis-side expiry.
local GC_HORIZON = 315360000000
-- The latest time accepted (ms): 9999-12-31T23:59:59.999Z, as in common.lua
-- (storage::deadline::MAX_DEADLINE_MS).
local MAX_TIME = 253402300799999
-- Expired subscriptions removed per call.
local PRUNE_BUDGET = 2000
-- Subscriptions a listing may look at beyond its limit (to skip expired
-- ones not pruned yet).
local LIST_SKIP = 10000
-- The most subscriptions list_confirmed sorts into <Q>:subok and
-- <Q>:subpend in one call when some are in neither; a queue with more
-- answers 'unindexed' and the caller filters the full listing instead.
local SORT_BUDGET = 2000
-- Subscriptions a purge deletes in one call: Redis never runs one script
-- for long, however many subscriptions a queue has.
local PURGE_BUDGET = 2000

local function int(x) return string.format('%d', x) end

-- ARGV[i] as an integer within [lo, hi], or the script stops (before any write).
local function arg_int(i, lo, hi)
  local v = tonumber(ARGV[i])
  if v == nil or v ~= v or v < lo or v > hi or v ~= math.floor(v) then
    error('argument ' .. i .. ' must be an integer within [' .. int(lo) .. ', ' .. int(hi) ..
          '], got ' .. tostring(ARGV[i]))
  end
  return v
end

local Q = ARGV[1]
local NOW = arg_int(2, 0, MAX_TIME)
local op = ARGV[3]

local K_SUBS = Q .. ':subs'
local K_EXP = Q .. ':subexp'
local K_PEND = Q .. ':subpend'
local K_OK = Q .. ':subok'
local K_URI = Q .. ':suburi'
local K_SEQ = Q .. ':subseq'
local function skey(id) return Q .. ':s:' .. id end

local function gc_at(key, at_ms)
  local ttl = at_ms - NOW
  if ttl < 0 then ttl = 0 end
  if ttl > GC_HORIZON then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, int(ttl + GC_MARGIN))
  end
end

local function forget(id)
  local uri = redis.call('HGET', skey(id), 's')
  if uri and redis.call('HGET', K_URI, uri) == id then redis.call('HDEL', K_URI, uri) end
  redis.call('DEL', skey(id))
  redis.call('ZREM', K_SUBS, id)
  redis.call('ZREM', K_EXP, id)
  redis.call('ZREM', K_PEND, id)
  redis.call('ZREM', K_OK, id)
end

-- Expired subscriptions go, each once in its life (no keyspace scan), at
-- most PRUNE_BUDGET per call.
local function prune()
  local ids = redis.call('ZRANGEBYSCORE', K_EXP, '-inf', int(NOW), 'LIMIT', 0, PRUNE_BUDGET)
  for _, id in ipairs(ids) do forget(id) end
end

-- Whether subscription `id` is listed and has not expired.
local function live(id)
  local e = redis.call('ZSCORE', K_EXP, id)
  return e and tonumber(e) > NOW
end

-- The queue-level keys live as long as the last subscription.
local function gc_index()
  local last = redis.call('ZRANGE', K_EXP, -1, -1, 'WITHSCORES')
  if last[2] then
    for _, k in ipairs({K_SUBS, K_EXP, K_PEND, K_OK, K_URI, K_SEQ}) do gc_at(k, tonumber(last[2])) end
  else
    redis.call('DEL', K_SUBS, K_EXP, K_PEND, K_OK, K_URI, K_SEQ)
  end
end

local function row(id)
  if not redis.call('ZSCORE', K_SUBS, id) or not live(id) then return nil end
  local f = redis.call('HMGET', skey(id), 's', 't', 'e', 'o', 'c')
  if not f[1] then
    forget(id)
    return nil
  end
  return {id, f[1], f[2], f[3], f[4], f[5] or '0'}
end

-- row() for an id just read from <Q>:subs: one call, not three (the record
-- carries its expiry, written with the <Q>:subexp entry). A listing of a
-- queue's subscriptions (the notifier expands each post with one) costs a
-- call per subscription.
local function listed_row(id)
  local f = redis.call('HMGET', skey(id), 's', 't', 'e', 'o', 'c')
  if not f[1] then
    forget(id)
    return nil
  end
  if not f[3] or tonumber(f[3]) <= NOW then return nil end
  return {id, f[1], f[2], f[3], f[4], f[5] or '0'}
end

-- Whether `uri` belongs to a live subscription; a stale entry (its
-- subscription expired and not pruned yet) is forgotten.
local function uri_taken(uri)
  local holder = redis.call('HGET', K_URI, uri)
  if not holder then return false end
  if row(holder) then return true end
  forget(holder)
  if redis.call('HGET', K_URI, uri) == holder then redis.call('HDEL', K_URI, uri) end
  return false
end

local function one(id)
  local r = id and row(id)
  if r then return {r} end
  return {}
end

-- Up to `limit` live rows of the ids in zset `key` (scored by creation
-- rank) after the marker ARGV[4]. Pages are full unless the list ends
-- (expired subscriptions not pruned yet are skipped, LIST_SKIP of them at
-- most).
local function page(key, limit)
  local start = '-inf'
  if ARGV[4] ~= '' then
    local rank = redis.call('ZSCORE', K_SUBS, ARGV[4])
    if rank then start = '(' .. rank end
  end
  local out = {}
  local left = limit + LIST_SKIP
  while #out < limit and left > 0 do
    local want = math.min(limit - #out, left)
    local ids, ranks = {}, {}
    local reply = redis.call('ZRANGEBYSCORE', key, start, '+inf', 'WITHSCORES', 'LIMIT', 0, want)
    for i = 1, #reply, 2 do
      ids[#ids + 1] = reply[i]
      ranks[#ranks + 1] = reply[i + 1]
    end
    left = left - #ids
    for i, id in ipairs(ids) do
      start = '(' .. ranks[i]
      local r = listed_row(id)
      if r then out[#out + 1] = r end
    end
    if #ids < want then break end
  end
  return out
end

-- Whether every subscription is in <Q>:subok or <Q>:subpend, as the ones
-- written by this script are. Ones written before those sets existed are
-- sorted into them here, by their record's flag, when the queue has at
-- most SORT_BUDGET subscriptions; false when more are left unsorted.
local function sorted_confirmed()
  local all = redis.call('ZCARD', K_SUBS)
  if all == redis.call('ZCARD', K_OK) + redis.call('ZCARD', K_PEND) then return true end
  if all > SORT_BUDGET then return false end
  local reply = redis.call('ZRANGE', K_SUBS, 0, -1, 'WITHSCORES')
  for i = 1, #reply, 2 do
    local id, rank = reply[i], reply[i + 1]
    if not redis.call('ZSCORE', K_OK, id) and not redis.call('ZSCORE', K_PEND, id) then
      local f = redis.call('HMGET', skey(id), 'c', 'e')
      if not f[2] then
        forget(id)
      elseif f[1] == '1' then
        redis.call('ZADD', K_OK, rank, id)
      else
        redis.call('ZADD', K_PEND, f[2], id)
      end
    end
  end
  gc_index()
  return true
end

-- The numbers of each operation, checked before the first write.
if op == 'list' or op == 'list_confirmed' then
  arg_int(5, 0, 10000)
elseif op == 'create' then
  arg_int(6, 0, math.floor(MAX_TIME / 1000))
  arg_int(7, 0, MAX_TIME)
elseif op == 'update' and ARGV[7] == '1' then
  arg_int(8, 0, math.floor(MAX_TIME / 1000))
  arg_int(9, 0, MAX_TIME)
elseif op == 'confirm' then
  -- 0 or 1: it decides the record's flag and the unconfirmed index.
  arg_int(5, 0, 1)
end

prune()

if op == 'list' then
  return page(K_SUBS, tonumber(ARGV[5]))
elseif op == 'list_confirmed' then
  if not sorted_confirmed() then return {'unindexed', {}} end
  return {'indexed', page(K_OK, tonumber(ARGV[5]))}
elseif op == 'get' then
  return one(ARGV[4])
elseif op == 'by_subscriber' then
  return one(redis.call('HGET', K_URI, ARGV[4]))
elseif op == 'create' then
  local id, uri, ttl, e, options = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  if uri_taken(uri) then return 'exists' end
  local rank = redis.call('INCR', K_SEQ)
  redis.call('HSET', skey(id), 's', uri, 't', ttl, 'e', e, 'o', options, 'c', '0')
  gc_at(skey(id), tonumber(e))
  redis.call('ZADD', K_SUBS, rank, id)
  redis.call('ZADD', K_EXP, e, id)
  redis.call('ZADD', K_PEND, e, id)
  redis.call('HSET', K_URI, uri, id)
  gc_index()
  return 'ok'
elseif op == 'update' then
  local id = ARGV[4]
  if not row(id) then return 'not_found' end
  local sk = skey(id)
  if ARGV[5] == '1' then
    local old, new = redis.call('HGET', sk, 's'), ARGV[6]
    if new ~= old then
      if uri_taken(new) then return 'exists' end
      if redis.call('HGET', K_URI, old) == id then redis.call('HDEL', K_URI, old) end
      redis.call('HSET', K_URI, new, id)
      redis.call('HSET', sk, 's', new)
    end
  end
  if ARGV[7] == '1' then
    redis.call('HSET', sk, 't', ARGV[8], 'e', ARGV[9])
    redis.call('ZADD', K_EXP, ARGV[9], id)
    if redis.call('ZSCORE', K_PEND, id) then redis.call('ZADD', K_PEND, ARGV[9], id) end
    gc_at(sk, tonumber(ARGV[9]))
  end
  if ARGV[10] == '1' then redis.call('HSET', sk, 'o', ARGV[11]) end
  gc_index()
  return 'ok'
elseif op == 'delete' then
  if redis.call('ZSCORE', K_SUBS, ARGV[4]) then forget(ARGV[4]) end
  gc_index()
  return 'ok'
elseif op == 'confirm' then
  local r = row(ARGV[4])
  if not r then return 'not_found' end
  redis.call('HSET', skey(ARGV[4]), 'c', ARGV[5])
  if ARGV[5] == '1' then
    redis.call('ZREM', K_PEND, ARGV[4])
    redis.call('ZADD', K_OK, redis.call('ZSCORE', K_SUBS, ARGV[4]), ARGV[4])
  else
    redis.call('ZREM', K_OK, ARGV[4])
    redis.call('ZADD', K_PEND, r[4], ARGV[4])
  end
  gc_index()
  return 'ok'
elseif op == 'purge' then
  -- The rank index goes last: until then a later call finds what is left.
  for _ = 1, PURGE_BUDGET / 200 do
    local ids = redis.call('ZRANGE', K_SUBS, 0, 199)
    if #ids == 0 then
      redis.call('DEL', K_SUBS, K_EXP, K_PEND, K_OK, K_URI, K_SEQ)
      return 'ok'
    end
    for _, id in ipairs(ids) do redis.call('DEL', skey(id)) end
    redis.call('ZREM', K_SUBS, unpack(ids))
  end
  return 'more'
end
return redis.error_reply('unknown subscription operation')
