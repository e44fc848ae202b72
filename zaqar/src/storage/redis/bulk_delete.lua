-- Bulk delete: ARGV[3] = 1 when claim ids are given, ARGV[4] = how many,
-- then the claim ids, then the message ids. With claim ids, every existing
-- message must be held by one of those (live) claims, else nothing is
-- deleted and 'mismatch' is returned.
normalize()
local nclaims = tonumber(ARGV[4])
local first_id = 5 + nclaims
if ARGV[3] == '1' then
  local allowed = {}
  for i = 5, first_id - 1 do allowed[ARGV[i]] = true end
  for i = first_id, #ARGV do
    local m = load(ARGV[i])
    if m and (m.c == '' or not allowed[m.c]) then return 'mismatch' end
  end
end
for i = first_id, #ARGV do
  if redis.call('ZSCORE', K_MSGS, ARGV[i]) then remove_message(ARGV[i]) end
end
return 'ok'
