-- Dead-letter insert, run on the DLQ: ARGV[3] = new ttl s (-1 = keep the
-- message's ttl; the expiry time is kept either way, as the reference does),
-- then 8 args per record as dlq_read returns them: id, ttl, expiry ms,
-- created ms, client id, body, checksum, claim count (the server sends a
-- chunk of records per call). Idempotent: a message already here is not
-- added twice. The message arrives unclaimed, at the end of the queue.
local new_ttl = arg_int(3, -1, MAX_SECS)
if (#ARGV - 3) % 8 ~= 0 then error('dead-letter records come in 8 values') end
local n = (#ARGV - 3) / 8
-- Every number checked before the first write.
for i = 0, n - 1 do
  local b = 4 + i * 8
  arg_int(b + 1, 0, MAX_SECS)
  arg_int(b + 2, 0, MAX_TIME)
  arg_int(b + 3, 0, MAX_TIME)
  arg_int(b + 7, 0, 2147483647)
end
normalize()
local horizon = NOW
for i = 0, n - 1 do
  local b = 4 + i * 8
  local id = ARGV[b]
  local t = tonumber(ARGV[b + 1])
  local e = tonumber(ARGV[b + 2])
  if new_ttl >= 0 then t = new_ttl end
  if e > NOW and not redis.call('ZSCORE', K_MSGS, id) then
    local rank = int(redis.call('HINCRBY', K_SEQ, 'last', '1'))
    redis.call('HSET', K_M, id, cmsgpack.pack(t, e, tonumber(ARGV[b + 3]), ARGV[b + 4], ARGV[b + 5],
                                              ARGV[b + 6], '', tonumber(ARGV[b + 7]), 0))
    redis.call('ZADD', K_MSGS, rank, id)
    redis.call('ZADD', K_EXP, int(e), id)
    due_at('de', e)
    if e > horizon then horizon = e end
  end
end
gc_queue(horizon)
return 'ok'
