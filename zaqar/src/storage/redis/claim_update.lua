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
local ids = redis.call('ZRANGE', cmkey(cid), 0, -1)
local ms = load_many(ids)
local records, extended = {}, {}
for i, id in ipairs(ids) do
  local m = ms[i]
  if m and m.e < keep_until then
    m.e = keep_until
    m.t = ttl + grace
    records[#records + 1] = id
    records[#records + 1] = encode(m)
    extended[#extended + 1] = int(keep_until)
    extended[#extended + 1] = id
  end
end
if #records > 0 then
  redis.call('HSET', K_M, unpack(records))
  redis.call('ZADD', K_EXP, unpack(extended))
end
gc_queue(keep_until)
return 'ok'
