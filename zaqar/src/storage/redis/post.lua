-- Post: ARGV[3] = n, ARGV[4] = the latest expiry ms among the messages,
-- then n pairs (id, record) in post order, then n pairs (expiry ms, id).
-- The server writes the records (see `record` in mod.rs); the layout lets
-- the script pass its arguments straight to HSET and ZADD. Ranks are
-- consecutive, in post order.
-- Returns {messages stored, live subscriptions of the queue (0 or more)}:
-- the notifier looks the subscriptions up only when there are some.
normalize()
local n = tonumber(ARGV[3])
local first = redis.call('INCRBY', K_SEQ, n) - n
local RECORDS = 5            -- ARGV index of the first (id, record) pair
local EXPIRIES = 5 + 2 * n   -- ARGV index of the first (expiry, id) pair
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
  redis.call('ZADD', K_MSGS, unpack(by_rank))
  redis.call('ZADD', K_FREE, unpack(by_rank))
  redis.call('ZADD', K_EXP, unpack(ARGV, EXPIRIES + 2 * lo, EXPIRIES + 2 * hi + 1))
end
-- Every key a post writes is re-created together with the free set.
gc_queue_lazy(K_FREE, tonumber(ARGV[4]))
local subs = redis.call('ZCOUNT', Q .. ':subexp', '(' .. ARGV[2], '+inf')
return {n, subs}
