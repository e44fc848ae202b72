-- Get: ARGV[3..] = message ids. Returns the live ones among them.
normalize()
local out = {}
for i = 3, #ARGV do
  local m = load(ARGV[i])
  if m then out[#out + 1] = render(ARGV[i], m) end
end
return out
