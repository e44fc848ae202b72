-- Bulk delete: ARGV[3] = 1 when claim ids are given, ARGV[4] = how many,
-- then the claim ids, then the message ids. With claim ids, every existing
-- message must be held by one of those (live) claims, else nothing is
-- deleted and 'mismatch' is returned.
normalize()
local nclaims = tonumber(ARGV[4])
local first_id = 5 + nclaims
local ids = {}
for i = first_id, #ARGV do ids[#ids + 1] = ARGV[i] end
local ms = load_many(ids)
if ARGV[3] == '1' then
  local allowed = {}
  for i = 5, first_id - 1 do allowed[ARGV[i]] = true end
  for i = 1, #ids do
    local m = ms[i]
    if m and (m.c == '' or not allowed[m.c]) then return 'mismatch' end
  end
end
local live, claims = {}, {}
for i, id in ipairs(ids) do
  if ms[i] and not claims[id] then
    live[#live + 1] = id
    claims[id] = ms[i].c
  end
end
remove_messages(live, claims)
return 'ok'
