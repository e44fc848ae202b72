-- List: ARGV[3] = marker ('' or the rank of the last message of the previous
-- page), ARGV[4] = limit, ARGV[5] = echo (1/0), ARGV[6] = client id,
-- ARGV[7] = include_claimed (1/0), ARGV[8] = include_delayed (1/0),
-- ARGV[9] = '' or the metadata stamp the server read the delay policy with
-- (see metadata_stamp.rs).
-- Returns {next_marker|'', {message...}, ''}; pages are full unless the
-- queue ends, or the call read SCAN_BUDGET records without filling the page
-- (a page then ends early; the marker goes on from its last message).
-- Returns {'', {}, 'stale'}, having read nothing, when the stamp is not
-- the queue's any more.
local stamp = ARGV[9] or ''
if stamp ~= '' and redis.call('GET', Q .. ':mv') ~= stamp then return {'', {}, 'stale'} end
local marker = ARGV[3]
local limit = arg_int(4, 0, SCAN_BUDGET)
normalize()
local echo = ARGV[5] == '1'
local client = ARGV[6]
local include_delayed = ARGV[8] == '1'
local start = '-inf'
if string.match(marker, '^%d+$') then start = '(' .. marker end
local out = {}
local last = ''
if limit > 0 then
  local function visit(id, m)
    if (include_delayed or m.d <= NOW) and (echo or m.u ~= client) then
      out[#out + 1] = render(id, m)
      last = m.r
    end
    return #out >= limit
  end
  if ARGV[7] == '1' then
    scan(K_MSGS, start, limit, visit)
  elseif include_delayed then
    -- Delayed messages that claims passed over wait in <Q>:wait (by due
    -- time, not rank): walk every message and leave the claimed ones out.
    scan(K_MSGS, start, limit, function(id, m)
      if claim_of(m) ~= '' then return false end
      return visit(id, m)
    end)
  else
    scan_unclaimed(start, limit, visit)
  end
end
return {last, out, ''}
