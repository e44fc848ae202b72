-- Walks of the rank index for the scripts that take or list messages in
-- order (claims, pops, listings): appended to common.lua for those scripts
-- only when they run as EVALSHA (library.rs), since every function a
-- script defines is then built again on each call.

-- Records this call may still read while walking indexes.
local scan_left

-- Starts a call of a script that walks indexes, after begin(): the walks
-- use the record helpers (common.lua).
local function begin_scan()
  records()
  scan_left = SCAN_BUDGET
end

-- The last rank of the expired run holding message `m` (above the head,
-- where a message's expiry is its run's: the whole run expired with it),
-- or nil when no run of that expiry holds it.
local function expired_run_end(m)
  local rank = tonumber(m.r)
  local runs = redis.call('ZRANGEBYSCORE', K_EXP, int(m.e), int(m.e), 'LIMIT', '0', '100')
  for _, member in ipairs(runs) do
    local a, b = string.match(member, '^r:(%d+):(%d+)$')
    if a and tonumber(a) <= rank and rank < tonumber(b) then return b end
  end
  return nil
end

-- Walks `index` (a zset scored by rank) from `start` in rank order, loading
-- records a page at a time, and calls visit(id, m) for each live message
-- until it returns true (then scan returns true). `page` bounds the records
-- read per round; SCAN_BUDGET bounds them per call (then scan gives up and
-- returns false, as at the end of the index). Expired messages the
-- collection has not reached yet are skipped: above the head a whole run
-- at a time, without reading it.
local function scan(index, start, page, visit)
  local h = nil
  if index == K_MSGS then h = tonumber(head()) end
  while scan_left > 0 do
    if page > scan_left then page = scan_left end
    local batch = redis.call('ZRANGEBYSCORE', index, start, '+inf', 'WITHSCORES', 'LIMIT', '0',
                              int(page))
    if #batch == 0 then return false end
    local ids, ranks = split_scored(batch)
    scan_left = scan_left - #ids
    local ms = load_raw(ids, ranks)
    local skip_to = nil
    for i, id in ipairs(ids) do
      start = '(' .. ranks[i]
      local m = ms[i]
      if m and m.e > NOW then
        if visit(id, m) then return true end
      elseif m and h and tonumber(ranks[i]) > h then
        skip_to = expired_run_end(m)
        if skip_to then break end
      end
    end
    if skip_to then
      start = '(' .. skip_to
    else
      if #ids < page then return false end
      if page < 100 then page = page * 2 end
    end
  end
  return false
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
-- passed over (delayed) join the wait set, by the time their delay ends,
-- and the head moves up to the last message looked at. Returns true when
-- the wait set was written to. (Delayed messages that an earlier version
-- put in the free set are passed over there until they come due.)
local function scan_claimable(page, visit)
  local function claimable(id, m)
    if m.d <= NOW then return visit(id, m) end
    return false
  end
  if scan(K_FREE, '-inf', page, claimable) then return false end
  local passed, passed_due, last = {}, nil, nil
  scan(K_MSGS, '(' .. head(), page, function(id, m)
    last = m.r
    if m.d <= NOW then return visit(id, m) end
    if passed_due == nil or m.d < passed_due then passed_due = m.d end
    passed[#passed + 1] = int(m.d)
    passed[#passed + 1] = wait_member(m.r, id)
    return false
  end)
  if last then set_head(last) end
  if #passed > 0 then
    call_chunked('ZADD', K_WAIT, passed)
    due_at('dw', passed_due)
    return true
  end
  return false
end
