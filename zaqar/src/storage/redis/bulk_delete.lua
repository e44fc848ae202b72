-- Bulk delete: ARGV[3] = 1 when claim ids are given, ARGV[4] = how many
-- claim ids, ARGV[5] = how many message ids, ARGV[6] = '' or the key of a
-- spilled list (see arg_list), then the list: the claim ids, then the
-- message ids. With claim ids, every live message must be held by one of
-- those live claims, else nothing is deleted and 'mismatch' is returned:
-- every chunk is checked before the first is deleted.
records()
local with_claims = ARGV[3] == '1'
local nclaims = arg_int(4, 0, 100000000)
local nids = arg_int(5, 0, 100000000)
local spill = ARGV[6]
local list = arg_list(spill, 7, nclaims + nids)

normalize()
local allowed = {}
for lo = 1, nclaims, CHUNK do
  for _, c in ipairs(list(lo, math.min(lo + CHUNK - 1, nclaims))) do allowed[c] = true end
end
-- Message ids lo..hi of the list (1-based among the message ids).
local function ids_at(lo)
  return list(nclaims + lo, nclaims + math.min(lo + CHUNK - 1, nids))
end
local outcome = 'ok'
-- The records the check read, per chunk, for the deletion to use again
-- (nothing changes in between).
local loaded = {}
if with_claims then
  for lo = 1, nids, CHUNK do
    local ids = ids_at(lo)
    local ms = load_many(ids)
    loaded[lo] = ms
    for i = 1, #ids do
      local m = ms[i]
      if m then
        local c = claim_of(m)
        if c == '' or not allowed[c] then outcome = 'mismatch' end
      end
    end
    if outcome ~= 'ok' then break end
  end
end
if outcome == 'ok' then
  local seen = {}
  for lo = 1, nids, CHUNK do
    local ids = ids_at(lo)
    local ms = loaded[lo] or load_many(ids)
    local live, claims = {}, {}
    for i, id in ipairs(ids) do
      if ms[i] and not seen[id] then
        seen[id] = true
        live[#live + 1] = id
        claims[id] = ms[i].c
      end
    end
    remove_messages(live, claims)
  end
end
if spill ~= '' then redis.call('UNLINK', spill) end
return outcome
