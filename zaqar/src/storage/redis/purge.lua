-- Purge: deletes every message and claim of the queue (the rank counter
-- stays, so markers handed out before keep their meaning).
records()
while true do
  local cids = redis.call('ZRANGE', K_CLAIMS, '0', '199')
  if #cids == 0 then break end
  for _, cid in ipairs(cids) do redis.call('DEL', ckey(cid), cmkey(cid)) end
  redis.call('ZREM', K_CLAIMS, unpack(cids))
end
redis.call('UNLINK', K_MSGS, K_EXP, K_FREE, K_WAIT, K_M, K_DEAD)
return 'ok'
