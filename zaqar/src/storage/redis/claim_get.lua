-- Claim get: ARGV[3] = claim id. Returns {} when missing or expired, else
-- {ttl, updated ms, {message...}}.
normalize()
local cid = ARGV[3]
if not redis.call('ZSCORE', K_CLAIMS, cid) then return {} end
local h = redis.call('HMGET', ckey(cid), 't', 'u')
local out = {}
for _, id in ipairs(redis.call('ZRANGE', cmkey(cid), 0, -1)) do
  local m = load(id)
  if m then out[#out + 1] = render(id, m) end
end
return {h[1] or '0', h[2] or '0', out}
