-- Purge: deletes every message and claim of the queue (the rank counter
-- stays, so markers handed out before keep their meaning).
for _, set in ipairs({K_MSGS, K_DEAD}) do
  while true do
    local ids = redis.call('ZRANGE', set, 0, 199)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do redis.call('DEL', mkey(id)) end
    redis.call('ZREM', set, unpack(ids))
  end
end
while true do
  local cids = redis.call('ZRANGE', K_CLAIMS, 0, 199)
  if #cids == 0 then break end
  for _, cid in ipairs(cids) do redis.call('DEL', ckey(cid), cmkey(cid)) end
  redis.call('ZREM', K_CLAIMS, unpack(cids))
end
redis.call('DEL', K_EXP, K_FREE)
return 'ok'
