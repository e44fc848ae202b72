-- Dead-letter read, run on the source queue between claim_create and
-- dlq_insert: ARGV[3..] = ids handed out for the DLQ (the server sends a
-- chunk at a time). Returns the records of those still in the outbox, 8
-- values each: {id, ttl, expiry ms, created ms, client id, body, checksum,
-- claim count}. Writes nothing.
records()
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
local recs = hmget(K_M, ids)
local out = {}
for i, id in ipairs(ids) do
  if recs[i] and redis.call('ZSCORE', K_DEAD, id) then
    local m = decode(recs[i])
    out[#out + 1] = {id, int(m.t), int(m.e), int(m.cr), m.u, m.b, m.k, int(m.n)}
  end
end
return out
