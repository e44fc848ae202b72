-- Claim release: ARGV[3] = claim id. Missing claims are ignored; an
-- expired one the collection has not reached yet is dropped now.
records()
normalize()
local cid = ARGV[3]
if redis.call('ZSCORE', K_CLAIMS, cid) and drop_claim(cid) > 0 then
  -- Released messages may have re-created the free set without an expiry.
  gc_queue_lazy(K_FREE, NOW)
end
return 'ok'
