-- Claim renew: ARGV[3] = claim id, ARGV[4] = ttl s, ARGV[5] = grace s.
-- Returns 'ok' or 'no_claim'.
normalize()
local cid = ARGV[3]
local ttl = tonumber(ARGV[4])
local grace = tonumber(ARGV[5])
if not redis.call('ZSCORE', K_CLAIMS, cid) then return 'no_claim' end
local ce = NOW + ttl * 1000
local keep_until = ce + grace * 1000
redis.call('ZADD', K_CLAIMS, int(ce), cid)
redis.call('HSET', ckey(cid), 't', int(ttl), 'u', int(NOW), 'e', int(ce))
gc_at(ckey(cid), ce)
gc_at(cmkey(cid), ce)
for _, id in ipairs(redis.call('ZRANGE', cmkey(cid), 0, -1)) do
  local m = load(id)
  if m and m.e < keep_until then
    local mk = mkey(id)
    redis.call('HSET', mk, 'e', int(keep_until), 't', int(ttl + grace))
    redis.call('ZADD', K_EXP, int(keep_until), id)
    gc_at(mk, keep_until)
  end
end
gc_queue()
return 'ok'
