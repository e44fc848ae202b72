-- Stats: returns {total, free, oldest id|'', oldest created, newest id|'', newest created}.
normalize()
local total = redis.call('ZCARD', K_MSGS)
local free = redis.call('ZCARD', K_FREE)
local function edge(index)
  local ids = redis.call('ZRANGE', K_MSGS, index, index)
  if #ids == 0 then return '', '0' end
  return ids[1], redis.call('HGET', mkey(ids[1]), 'cr') or '0'
end
local oid, ocr = edge(0)
local nid, ncr = edge(-1)
return {total, free, oid, ocr, nid, ncr}
