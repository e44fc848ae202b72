-- Queue records of one project (a different slot from its queues' messages).
-- KEYS[1] = <P>:queues (zset, score 0, names in lexicographic order),
-- KEYS[2] = <P>:meta (hash name -> metadata JSON).
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
  local names = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, tonumber(ARGV[3]))
  local metas = {}
  if ARGV[4] == '1' and #names > 0 then
    metas = redis.call('HMGET', KEYS[2], unpack(names))
    for i = 1, #names do metas[i] = metas[i] or '{}' end
  end
  return {names, metas}
end
return redis.error_reply('unknown queue operation')
