-- Claim release: ARGV[3] = claim id. Missing claims are ignored.
normalize()
local cid = ARGV[3]
if redis.call('ZSCORE', K_CLAIMS, cid) then drop_claim(cid) end
return 'ok'
