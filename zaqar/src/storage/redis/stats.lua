-- Stats: returns one MessagePack sequence (total, free, oldest id or '',
-- oldest created ms, newest id or '', newest created ms): one bulk string,
-- which the server reads for less than six RESP values (see render).
-- Exact once the collection in normalize() has caught up; while a larger
-- expiry than one call collects is still being collected (or more claims
-- expired at once than one call releases), the counts include what
-- expired and is not collected yet, as the reference's do.
records()
normalize()
local total = redis.call('ZCARD', K_MSGS)
local free = redis.call('ZCARD', K_FREE) + redis.call('ZCARD', K_WAIT)
  + redis.call('ZCOUNT', K_MSGS, '(' .. head(), '+inf')
-- The first live message from one end of the rank index, looking at 100
-- at most (more could only be expired ones not collected yet: then the
-- first of them, like the counts). Read a page at a time, 1 then 9 then 90
-- records: the first message is nearly always live, and decoding records
-- is most of this script's cost.
local function edge(reverse)
  local first_id, first_cr = nil, nil
  local bound = nil
  for _, n in ipairs({1, 9, 90}) do
    local reply
    if reverse then
      reply = redis.call('ZREVRANGEBYSCORE', K_MSGS, bound and ('(' .. bound) or '+inf', '-inf',
                         'WITHSCORES', 'LIMIT', '0', int(n))
    else
      reply = redis.call('ZRANGEBYSCORE', K_MSGS, bound and ('(' .. bound) or '-inf', '+inf',
                         'WITHSCORES', 'LIMIT', '0', int(n))
    end
    local ids, ranks = split_scored(reply)
    local ms = load_raw(ids, ranks)
    for i, id in ipairs(ids) do
      local m = ms[i]
      if m and m.e > NOW then return id, m.cr end
      if m and not first_id then first_id, first_cr = id, m.cr end
    end
    if #ids < n then break end
    bound = ranks[#ranks]
  end
  if first_id then return first_id, first_cr end
  return '', 0
end
local oid, ocr = edge(false)
local nid, ncr = edge(true)
return cmsgpack.pack(total, free, oid, ocr, nid, ncr)
