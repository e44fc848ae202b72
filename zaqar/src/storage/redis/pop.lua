-- Pop: ARGV[3] = limit. Removes and returns the oldest claimable messages.
normalize()
local limit = tonumber(ARGV[3])
local out = {}
scan_claimable(function(id, m)
  out[#out + 1] = render(id, m)
  remove_message(id)
  return #out >= limit
end)
return out
