-- Pop: ARGV[3] = limit. Removes and returns the oldest claimable messages.
local limit = arg_int(3, 0, SCAN_BUDGET)
normalize()
local out = {}
local ids = {}
local freed = false
if limit > 0 then
  freed = scan_claimable(limit, function(id, m)
    out[#out + 1] = render(id, m)
    ids[#ids + 1] = id
    return #out >= limit
  end)
end
-- Claimable messages belong to no claim.
local claims = {}
for _, id in ipairs(ids) do claims[id] = '' end
remove_messages(ids, claims)
-- Passing over delayed messages may have created the wait set.
if freed then gc_queue_lazy(K_WAIT, NOW) end
return out
