-- The notification outbox: one per deployment (key prefix), all under one
-- hash tag, so one slot on Redis Cluster (see the module docs for why).
-- KEYS[1] = <O>:due routes the call, KEYS[2] = <O>:guard (never written;
-- see keys.rs); ARGV[1] = <O>, ARGV[2] = now in ms
-- (the server's injected clock), ARGV[3] = operation, then its arguments:
--   enqueue (project json)...     -> number queued (due now, 0 attempts)
--   lease limit lease_ms per_project n (project busy){n}
--                                 -> {{id, attempts, created ms, json}...}
--   complete id                   -> 'ok'
--   retry id attempts due_ms      -> 'ok' (nothing for a completed id)
--   next_due                      -> due ms of the earliest row, or ''
--   depth                         -> how many rows, or '' (not counted)
--
-- Keys (<O> = <prefix>:o{outbox}):
--   <O>:p:<project>  zset id -> due ms   the project's pending deliveries;
--                                        a lease moves a due time to the
--                                        lease end
--   <O>:ready        zset project -> ms  every project with deliveries, by
--                                        its earliest due time
--   <O>:seq          string              last id handed out
--   <O>:n            string              how many rows there are; absent
--                                        while rows written by versions that
--                                        did not count them remain (it is
--                                        started the first time the outbox
--                                        is empty)
--   <O>:d:<id>       hash j delivery JSON, a failed attempts, cr created ms,
--                    p project
--   <O>:due          zset id -> due ms   deliveries queued by versions that
--                                        had no per-project sets (their hash
--                                        has no p); served as one more group
--                                        until drained, never written anew
-- Ids are zero-padded ranks, so deliveries due at the same ms leave in the
-- order they came (members with one score sort lexicographically). No key
-- of the outbox expires: a delivery leaves only through complete.
--
-- A lease is fair (Outbox::lease_fair): projects are taken by their
-- earliest due time, skipping those with no quota left (per_project minus
-- their busy count), until `limit` of them; each gives up to its quota, one
-- delivery per project per round. Its cost grows with `limit` and the
-- number of busy projects, not with how many deliveries a project queued.

local O = ARGV[1]
local NOW = tonumber(ARGV[2])
local op = ARGV[3]
local K_DUE = O .. ':due'
local K_READY = O .. ':ready'
local K_SEQ = O .. ':seq'
local K_COUNT = O .. ':n'
local function dkey(id) return O .. ':d:' .. id end
local function pkey(project) return O .. ':p:' .. project end
local function int(x) return string.format('%d', x) end
local function count(x)
  local n = tonumber(x)
  if n == nil or n < 0 or n ~= math.floor(n) then return nil end
  return n
end
if NOW == nil then return redis.error_reply('bad clock') end

-- Whether the outbox holds no row (every row is in one set: its project's,
-- or the legacy due set).
local function empty()
  return redis.call('ZCARD', K_READY) == 0 and redis.call('ZCARD', K_DUE) == 0
end

-- Keeps <O>:ready in step with the project's set (after any change to it).
local function refresh(project)
  local head = redis.call('ZRANGE', pkey(project), 0, 0, 'WITHSCORES')
  if head[2] then
    redis.call('ZADD', K_READY, head[2], project)
  else
    redis.call('ZREM', K_READY, project)
  end
end

if op == 'enqueue' then
  local n = (#ARGV - 3) / 2
  if n ~= math.floor(n) then return redis.error_reply('enqueue takes project/json pairs') end
  if n == 0 then return 0 end
  if redis.call('EXISTS', K_COUNT) == 1 or empty() then
    redis.call('INCRBY', K_COUNT, n)
  end
  local last = redis.call('INCRBY', K_SEQ, n)
  local touched = {}
  for i = 1, n do
    local project, json = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
    local id = string.format('%020d', last - n + i)
    redis.call('HSET', dkey(id), 'j', json, 'a', '0', 'cr', int(NOW), 'p', project)
    redis.call('ZADD', pkey(project), int(NOW), id)
    touched[project] = true
  end
  for project in pairs(touched) do refresh(project) end
  return n
elseif op == 'lease' then
  local limit, lease_ms, per, nbusy =
    count(ARGV[4]), count(ARGV[5]), count(ARGV[6]), count(ARGV[7])
  if not (limit and lease_ms and per and nbusy) or #ARGV ~= 7 + 2 * nbusy then
    return redis.error_reply('bad lease arguments')
  end
  local busy = {}
  for i = 1, nbusy do
    local b = count(ARGV[7 + 2 * i])
    if not b then return redis.error_reply('bad busy count') end
    busy[ARGV[6 + 2 * i]] = b
  end
  if limit == 0 then return {} end
  -- Groups to serve: {set key, quota, earliest due, project or false}.
  local groups = {}
  local offset, page = 0, 100
  while #groups < limit do
    local ready = redis.call('ZRANGEBYSCORE', K_READY, '-inf', NOW, 'WITHSCORES', 'LIMIT', offset, page)
    for i = 1, #ready, 2 do
      local project = ready[i]
      local quota = math.min(per - (busy[project] or 0), limit)
      if quota > 0 and #groups < limit then
        groups[#groups + 1] = {pkey(project), quota, tonumber(ready[i + 1]), project}
      end
    end
    if #ready < 2 * page then break end
    offset = offset + page
  end
  local legacy = redis.call('ZRANGEBYSCORE', K_DUE, '-inf', NOW, 'WITHSCORES', 'LIMIT', 0, 1)
  if legacy[2] then
    groups[#groups + 1] = {K_DUE, math.min(per, limit), tonumber(legacy[2]), false}
    table.sort(groups, function(a, b) return a[3] < b[3] end)
  end
  local lists = {}
  for g = 1, #groups do
    lists[g] = redis.call('ZRANGEBYSCORE', groups[g][1], '-inf', NOW, 'LIMIT', 0, groups[g][2])
  end
  local until_ms = int(NOW + lease_ms)
  local out = {}
  local round = 1
  while #out < limit do
    local took = false
    for g = 1, #groups do
      local id = lists[g][round]
      if id and #out < limit then
        took = true
        local f = redis.call('HMGET', dkey(id), 'a', 'cr', 'j')
        if f[3] then
          redis.call('ZADD', groups[g][1], until_ms, id)
          out[#out + 1] = {id, f[1] or '0', f[2] or '0', f[3]}
        else
          -- An index entry without its row (never written by these scripts).
          redis.call('ZREM', groups[g][1], id)
        end
      end
    end
    if not took then break end
    round = round + 1
  end
  for g = 1, #groups do
    if groups[g][4] then refresh(groups[g][4]) end
  end
  return out
elseif op == 'complete' then
  local id = ARGV[4]
  local project = redis.call('HGET', dkey(id), 'p')
  local removed = redis.call('DEL', dkey(id))
  if project then
    redis.call('ZREM', pkey(project), id)
    refresh(project)
  else
    redis.call('ZREM', K_DUE, id)
  end
  if removed == 1 and redis.call('EXISTS', K_COUNT) == 1 then
    redis.call('DECR', K_COUNT)
  elseif empty() then
    redis.call('SET', K_COUNT, '0')
  end
  return 'ok'
elseif op == 'retry' then
  local id, due = ARGV[4], ARGV[6]
  if count(ARGV[5]) == nil or tonumber(due) == nil then
    return redis.error_reply('bad retry arguments')
  end
  if redis.call('EXISTS', dkey(id)) == 1 then
    redis.call('HSET', dkey(id), 'a', ARGV[5])
    local project = redis.call('HGET', dkey(id), 'p')
    if project then
      redis.call('ZADD', pkey(project), due, id)
      refresh(project)
    else
      redis.call('ZADD', K_DUE, due, id)
    end
  end
  return 'ok'
elseif op == 'next_due' then
  local a = redis.call('ZRANGE', K_READY, 0, 0, 'WITHSCORES')[2]
  local b = redis.call('ZRANGE', K_DUE, 0, 0, 'WITHSCORES')[2]
  if a and b then
    if tonumber(a) < tonumber(b) then return a end
    return b
  end
  return a or b or ''
elseif op == 'depth' then
  local n = redis.call('GET', K_COUNT)
  if n then return n end
  if empty() then return '0' end
  return ''
end
return redis.error_reply('unknown outbox operation')
