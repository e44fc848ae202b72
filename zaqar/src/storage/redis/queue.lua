-- Queue records of one project (a different slot from its queues' messages).
-- KEYS[1] = <P>:queues (zset, score 0, names in lexicographic order),
-- KEYS[2] = <P>:meta (hash name -> metadata JSON), KEYS[3] = <P>:guard
-- (never written; see keys.rs).
-- ARGV[1] = operation, then its arguments:
--   create name json       -> 1 created, 0 existed (metadata kept)
--   set name json          -> 1 updated, 0 no such queue
--   delete name            -> 'ok'
--   list marker limit det  -> {names, metadata|'' per name}
local op = ARGV[1]
if op == 'create' then
  local created = redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
  redis.call('ZADD', KEYS[1], 0, ARGV[2])
  return created
elseif op == 'set' then
  if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 0 end
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  return 1
elseif op == 'delete' then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 'ok'
elseif op == 'list' then
  local start = '-'
  if ARGV[2] ~= '' then start = '(' .. ARGV[2] end
  -- The server asks for at most 10,000 names (a page).
  local limit = tonumber(ARGV[3])
  if not limit or limit ~= math.floor(limit) or limit < 0 or limit > 10000 then
    return redis.error_reply('bad queue list limit')
  end
  local names = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, limit)
  local metas = {}
  if ARGV[4] == '1' then
    -- HMGET a chunk at a time (Lua's unpack stops near 8,000 values).
    for lo = 1, #names, 1000 do
      local hi = math.min(lo + 999, #names)
      local part = redis.call('HMGET', KEYS[2], unpack(names, lo, hi))
      for i = 1, #part do metas[lo + i - 1] = part[i] or '{}' end
    end
  end
  return {names, metas}
end
return redis.error_reply('unknown queue operation')
