-- Claim get: ARGV[3] = claim id. Returns {} when missing or expired, else
-- {ttl, updated ms, {message...}}.
records()
normalize()
local cid = ARGV[3]
if not claim_live(cid) then return {} end
local h = redis.call('HMGET', ckey(cid), 't', 'u')
local out = {}
local ids, ranks = split_scored(redis.call('ZRANGE', cmkey(cid), '0', '-1', 'WITHSCORES'))
local ms = load_many(ids, ranks)
for i, id in ipairs(ids) do
  if ms[i] and ms[i].c == cid then out[#out + 1] = render(id, ms[i]) end
end
return {h[1] or '0', h[2] or '0', out}
