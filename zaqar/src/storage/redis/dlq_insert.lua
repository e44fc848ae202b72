-- Dead-letter insert, run on the DLQ: ARGV[3] = new ttl s (-1 = keep the
-- message's ttl; the expiry time is kept either way, as the reference does), then 8 args per record as returned by
-- claim_create: id, ttl, expiry ms, created ms, client, body, checksum,
-- claim count. Idempotent: a message already here is not added twice.
-- The message arrives unclaimed, at the end of the queue.
normalize()
local new_ttl = tonumber(ARGV[3])
local n = (#ARGV - 3) / 8
for i = 0, n - 1 do
  local b = 4 + i * 8
  local id = ARGV[b]
  local mk = mkey(id)
  local t = tonumber(ARGV[b + 1])
  local e = tonumber(ARGV[b + 2])
  if new_ttl >= 0 then t = new_ttl end
  if e > NOW and not redis.call('ZSCORE', K_MSGS, id) then
    local rank = redis.call('INCR', K_SEQ)
    redis.call('HSET', mk, 't', int(t), 'e', int(e), 'cr', ARGV[b + 3], 'u', ARGV[b + 4], 'b', ARGV[b + 5],
               'c', '', 'n', ARGV[b + 7], 'd', '0', 'r', int(rank))
    if ARGV[b + 6] ~= '' then redis.call('HSET', mk, 'k', ARGV[b + 6]) end
    gc_at(mk, e)
    redis.call('ZADD', K_MSGS, int(rank), id)
    redis.call('ZADD', K_EXP, int(e), id)
    redis.call('ZADD', K_FREE, int(rank), id)
  end
end
gc_queue()
return 'ok'
