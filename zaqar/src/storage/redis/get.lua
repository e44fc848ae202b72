-- Get: ARGV[3..] = message ids (the server sends at most a few thousand
-- per call). Returns the live ones among them.
records()
normalize()
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
local ms = load_many(ids)
local out = {}
for i, id in ipairs(ids) do
  if ms[i] then out[#out + 1] = render(id, ms[i]) end
end
return out
