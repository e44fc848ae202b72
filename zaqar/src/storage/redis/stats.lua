-- Stats: returns {total, free, oldest id|'', oldest created, newest id|'', newest created}.
normalize()
local total = redis.call('ZCARD', K_MSGS)
local free = redis.call('ZCARD', K_FREE) + redis.call('ZCOUNT', K_MSGS, '(' .. head(), '+inf')
local function edge(index)
  local ids = redis.call('ZRANGE', K_MSGS, index, index)
  if #ids == 0 then return '', '0' end
  local rec = redis.call('HGET', K_M, ids[1])
  if not rec then return ids[1], '0' end
  return ids[1], int(decode(rec).cr)
end
local oid, ocr = edge(0)
local nid, ncr = edge(-1)
return {total, free, oid, ocr, nid, ncr}
