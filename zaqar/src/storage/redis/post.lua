-- Post: ARGV[3] = n (messages), ARGV[4] = the latest expiry ms among them,
-- ARGV[5] = r (runs), ARGV[6] = '' or the key of a spilled list (see
-- arg_list), ARGV[7] = the long-poll wake-up channel, ARGV[8] = the message
-- published on it once the messages are stored, if a long poll waits for
-- the queue (see wake.rs), ARGV[9] =
-- '' or the metadata stamp the server validated the messages against (see
-- metadata_stamp.rs), then the list of 2n + 2r values, inline or spilled:
-- n pairs
-- (id, record) in post order, then r pairs (expiry ms, count) for the runs
-- of consecutive messages sharing an expiry (one run for a usual batch).
-- The server writes the records (see `record` in mod.rs); the layout lets
-- the script pass its arguments straight to HSET. Ranks are consecutive,
-- in post order.
-- Returns {messages stored, live subscriptions of the queue, the
-- unconfirmed ones among them} (see subscription.lua): the notifier looks
-- the subscriptions up only when there are some to notify; {-1, 0, 0},
-- having written nothing, when the stamp is not the queue's any more.
local n = arg_int(3, 1, 100000000)
local last_expiry = arg_int(4, 0, MAX_TIME)
local nruns = arg_int(5, 1, n)
local spill = ARGV[6]
local stamp = ARGV[9]
if stamp ~= '' and redis.call('GET', Q .. ':mv') ~= stamp then
  if spill ~= '' then redis.call('UNLINK', spill) end
  return {-1, 0, 0}
end
local list = arg_list(spill, 10, 2 * n + 2 * nruns)
-- The runs, checked before any write: expiries in range, counts adding up.
local runs = {}
local covered = 0
for lo = 2 * n + 1, 2 * n + 2 * nruns, CHUNK do
  local part = list(lo, math.min(lo + CHUNK - 1, 2 * n + 2 * nruns))
  for i = 1, #part, 2 do
    local e, count = tonumber(part[i]), tonumber(part[i + 1])
    if not e or e ~= math.floor(e) or e < 0 or e > MAX_TIME
       or not count or count ~= math.floor(count) or count < 1 then
      error('bad run ' .. tostring(part[i]) .. ' x ' .. tostring(part[i + 1]))
    end
    covered = covered + count
    runs[#runs + 1] = {e, count}
  end
end
if covered ~= n then error('runs cover ' .. int(covered) .. ' of ' .. int(n) .. ' messages') end

normalize()
local first = redis.call('HINCRBY', K_SEQ, 'last', int(n)) - n
local PAIRS = CHUNK / 2
for lo = 0, n - 1, PAIRS do
  local hi = math.min(lo + PAIRS, n) - 1
  local records = list(2 * lo + 1, 2 * hi + 2)
  redis.call('HSET', K_M, unpack(records))
  local by_rank = {}
  for i = 1, #records, 2 do
    by_rank[#by_rank + 1] = int(first + lo + (i + 1) / 2)
    by_rank[#by_rank + 1] = records[i]
  end
  -- Above the head, so unclaimed without an entry in the free set.
  redis.call('ZADD', K_MSGS, unpack(by_rank))
end
local entries = {}
local rank = first
local soonest = runs[1][1]
for _, run in ipairs(runs) do
  if run[1] < soonest then soonest = run[1] end
  entries[#entries + 1] = int(run[1])
  entries[#entries + 1] = 'r:' .. int(rank + 1) .. ':' .. int(rank + run[2])
  rank = rank + run[2]
end
call_chunked('ZADD', K_EXP, entries)
due_at('de', soonest)
if spill ~= '' then redis.call('UNLINK', spill) end
-- Every key a post writes is re-created together with the message index
-- (the expiry index and the record hash can outlive it only with an
-- expiry they already had).
gc_queue_lazy(K_MSGS, last_expiry)
local subs = redis.call('ZCOUNT', Q .. ':subexp', '(' .. NOW_S, '+inf')
local pending = 0
if subs > 0 then pending = redis.call('ZCOUNT', Q .. ':subpend', '(' .. NOW_S, '+inf') end
-- The wake-up for long polls on every server process, from here rather
-- than in a second call after this one: the server saves a round trip. Only
-- while some process has a request waiting for this queue (<Q>:polled, see
-- wake_expect.lua): otherwise no process would do anything with it, and
-- every one of them would still read it.
if redis.call('EXISTS', Q .. ':polled') == 1 then
  redis.call('PUBLISH', ARGV[7], ARGV[8])
end
return {n, subs, pending}
