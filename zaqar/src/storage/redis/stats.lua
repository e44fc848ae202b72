-- Stats: returns {total, free, oldest id|'', oldest created, newest id|'', newest created}.
-- Exact once the collection in normalize() has caught up; while a larger
-- expiry than one call collects is still being collected (or more claims
-- expired at once than one call releases), the counts include what
-- expired and is not collected yet, as the reference's do.
normalize()
local total = redis.call('ZCARD', K_MSGS)
local free = redis.call('ZCARD', K_FREE) + redis.call('ZCARD', K_WAIT)
  + redis.call('ZCOUNT', K_MSGS, '(' .. head(), '+inf')
-- The first live message from one end of the rank index, looking at 100
-- at most (more could only be expired ones not collected yet: then the
-- first of them, like the counts).
local function edge(reverse)
  local reply
  if reverse then
    reply = redis.call('ZREVRANGE', K_MSGS, 0, 99, 'WITHSCORES')
  else
    reply = redis.call('ZRANGE', K_MSGS, 0, 99, 'WITHSCORES')
  end
  local ids, ranks = split_scored(reply)
  local ms = load_raw(ids, ranks)
  local first = nil
  for i, id in ipairs(ids) do
    local m = ms[i]
    if m and m.e > NOW then return id, int(m.cr) end
    if m and not first then first = i end
  end
  if first then return ids[first], int(ms[first].cr) end
  return '', '0'
end
local oid, ocr = edge(false)
local nid, ncr = edge(true)
return {total, free, oid, ocr, nid, ncr}
