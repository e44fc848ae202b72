-- Delete one message: ARGV[3] = id, ARGV[4] = 1 when a claim id is given,
-- 2 when the one given cannot name a claim, ARGV[5] = claim id. Returns
-- 'ok', 'is_claimed', 'not_claimed' or 'no_claim'. A message that is not
-- there is deleted already, whatever the claim id.
records()
normalize()
local id = ARGV[3]
local m = load(id)
if not m then return 'ok' end
if ARGV[4] == '2' then return 'no_claim' end
local held = claim_of(m)
if ARGV[4] ~= '1' then
  if held ~= '' then return 'is_claimed' end
  remove_message(id, m.c)
  return 'ok'
end
local cid = ARGV[5]
if held == '' then return 'not_claimed' end
if held == cid then
  remove_message(id, m.c)
  return 'ok'
end
if claim_live(cid) then return 'is_claimed' end
return 'no_claim'
