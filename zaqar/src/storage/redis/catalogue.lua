-- The management plane of pooling (see catalogue.rs). Every key shares one
-- hash tag, so each call is atomic on Cluster too. KEYS[1] = the prefix,
-- KEYS[2] = <prefix>:guard (never written; see keys.rs).
-- ARGV[1] = the operation; each checks everything before its first write.
--
--   put_pool name uri json max_pools  -> 'ok' | 'uri_in_use' | 'too_many'
--   delete_pool name                   -> 'ok'
--   put_flavor member json max         -> 'ok' | 'too_many'   (member = <plen>:<project>:<name>)
--   delete_flavor member               -> 'ok'
--   map member pool                    -> 'ok'                 (member = <plen>:<project>:<queue>)
--   unmap member                       -> 'ok'
local p = KEYS[1]
local pools, names, uris = p .. ':pools', p .. ':pool_names', p .. ':pool_uris'
local flavors, flavor_names = p .. ':flavors', p .. ':flavor_names'
local catalogue, counts = p .. ':catalogue', p .. ':pool_queues'
local op = ARGV[1]

if op == 'put_pool' then
  local name, uri, json, max = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
  local holder = redis.call('HGET', uris, uri)
  if holder and holder ~= name then return 'uri_in_use' end
  local old = redis.call('HGET', pools, name)
  if not old and redis.call('HLEN', pools) >= max then return 'too_many' end
  if old then
    local old_uri = cjson.decode(old).uri
    if old_uri ~= uri then redis.call('HDEL', uris, old_uri) end
  end
  redis.call('HSET', pools, name, json)
  redis.call('HSET', uris, uri, name)
  redis.call('ZADD', names, 0, name)
  return 'ok'
elseif op == 'delete_pool' then
  local name = ARGV[2]
  local old = redis.call('HGET', pools, name)
  if old then
    redis.call('HDEL', uris, cjson.decode(old).uri)
    redis.call('HDEL', pools, name)
    redis.call('ZREM', names, name)
  end
  return 'ok'
elseif op == 'put_flavor' then
  local member, json, max = ARGV[2], ARGV[3], tonumber(ARGV[4])
  -- The project's members are '<plen>:<project>:...', all below
  -- '<plen>:<project>;' (';' follows ':').
  local head = string.match(member, '^%d+:')
  local plen = tonumber(string.sub(head, 1, -2))
  local project = string.sub(member, #head + 1, #head + plen)
  local lo, hi = '[' .. head .. project .. ':', '(' .. head .. project .. ';'
  if redis.call('HEXISTS', flavors, member) == 0 then
    local n = #redis.call('ZRANGEBYLEX', flavor_names, lo, hi, 'LIMIT', 0, max)
    if n >= max then return 'too_many' end
  end
  redis.call('HSET', flavors, member, json)
  redis.call('ZADD', flavor_names, 0, member)
  return 'ok'
elseif op == 'delete_flavor' then
  redis.call('HDEL', flavors, ARGV[2])
  redis.call('ZREM', flavor_names, ARGV[2])
  return 'ok'
elseif op == 'map' then
  local member, pool = ARGV[2], ARGV[3]
  local old = redis.call('HGET', catalogue, member)
  if old == pool then return 'ok' end
  if old then redis.call('HINCRBY', counts, old, -1) end
  redis.call('HSET', catalogue, member, pool)
  redis.call('HINCRBY', counts, pool, 1)
  return 'ok'
elseif op == 'unmap' then
  local member = ARGV[2]
  local old = redis.call('HGET', catalogue, member)
  if old then
    redis.call('HDEL', catalogue, member)
    redis.call('HINCRBY', counts, old, -1)
  end
  return 'ok'
end
return redis.error_reply('unknown catalogue operation ' .. tostring(op))
