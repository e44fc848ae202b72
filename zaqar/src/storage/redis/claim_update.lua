-- Claim renew: ARGV[3] = claim id, ARGV[4] = claim ttl s, ARGV[5] = claim
-- end ms, ARGV[6] = ttl s of an extended message (ttl + grace), ARGV[7] =
-- the expiry its messages keep at least (claim end + grace, ms), all
-- computed by the server (storage::deadline) and checked here again.
-- Returns 'ok' or 'no_claim'.
records()
local cid = ARGV[3]
local ttl = arg_int(4, 0, MAX_SECS)
local ce = arg_int(5, NOW, MAX_TIME)
local extended_ttl = arg_int(6, ttl, MAX_SECS)
local keep_until = arg_int(7, ce, MAX_TIME)

normalize()
if not claim_live(cid) then return 'no_claim' end
redis.call('ZADD', K_CLAIMS, int(ce), cid)
due_at('dc', ce)
redis.call('HSET', ckey(cid), 't', int(ttl), 'u', NOW_S, 'e', int(ce))
gc_at(ckey(cid), ce)
gc_at(cmkey(cid), ce)
-- The claim's messages (as many as it took: bounded by the claim limit).
local ids = redis.call('ZRANGE', cmkey(cid), '0', '-1')
local ms = load_many(ids)
local records, extended = {}, {}
for i, id in ipairs(ids) do
  local m = ms[i]
  if m and m.c == cid and m.e < keep_until then
    m.e = keep_until
    m.t = extended_ttl
    records[#records + 1] = id
    records[#records + 1] = encode(m)
    extended[#extended + 1] = int(keep_until)
    extended[#extended + 1] = id
  end
end
call_chunked('HSET', K_M, records)
call_chunked('ZADD', K_EXP, extended)
if #extended > 0 then due_at('de', keep_until) end
gc_queue(keep_until)
return 'ok'
