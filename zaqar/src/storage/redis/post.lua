-- Post: ARGV[3] = n, ARGV[4] = the latest expiry ms among the messages,
-- then n pairs (id, record) in post order, then pairs (expiry ms, count)
-- for the runs of consecutive messages sharing an expiry (one run for a
-- usual batch). The server writes the records (see `record` in mod.rs);
-- the layout lets the script pass its arguments straight to HSET.
-- Ranks are consecutive, in post order.
-- Returns {messages stored, live subscriptions of the queue (0 or more)}:
-- the notifier looks the subscriptions up only when there are some.
normalize()
local n = tonumber(ARGV[3])
local first = redis.call('HINCRBY', K_SEQ, 'last', n) - n
local RECORDS = 5            -- ARGV index of the first (id, record) pair
local RUNS = 5 + 2 * n       -- ARGV index of the first (expiry, count) pair
-- Chunks keep unpack() far below Lua's limit on unpacked values.
local CHUNK = 500
for lo = 0, n - 1, CHUNK do
  local hi = math.min(lo + CHUNK, n) - 1
  redis.call('HSET', K_M, unpack(ARGV, RECORDS + 2 * lo, RECORDS + 2 * hi + 1))
  local by_rank = {}
  for i = lo, hi do
    by_rank[#by_rank + 1] = first + i + 1
    by_rank[#by_rank + 1] = ARGV[RECORDS + 2 * i]
  end
  -- Above the head, so unclaimed without an entry in the free set.
  redis.call('ZADD', K_MSGS, unpack(by_rank))
end
local runs = {}
local rank = first
for j = RUNS, #ARGV - 1, 2 do
  local count = tonumber(ARGV[j + 1])
  runs[#runs + 1] = ARGV[j]
  runs[#runs + 1] = 'r:' .. int(rank + 1) .. ':' .. int(rank + count)
  rank = rank + count
  if #runs >= 2 * CHUNK then
    redis.call('ZADD', K_EXP, unpack(runs))
    runs = {}
  end
end
if #runs > 0 then redis.call('ZADD', K_EXP, unpack(runs)) end
-- Every key a post writes is re-created together with the message index
-- (the expiry index and the record hash can outlive it only with an
-- expiry they already had).
gc_queue_lazy(K_MSGS, tonumber(ARGV[4]))
local subs = redis.call('ZCOUNT', Q .. ':subexp', '(' .. ARGV[2], '+inf')
return {n, subs}
