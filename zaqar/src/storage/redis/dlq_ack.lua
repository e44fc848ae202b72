-- Dead-letter acknowledge, run on the source queue once the DLQ holds the
-- messages: ARGV[3..] = message ids leaving the outbox for good (the
-- server sends a chunk at a time).
for i = 3, #ARGV do
  -- (A queue that is its own DLQ got the message back: keep its record.)
  if redis.call('ZREM', K_DEAD, ARGV[i]) == 1 and not redis.call('ZSCORE', K_MSGS, ARGV[i]) then
    redis.call('HDEL', K_M, ARGV[i])
  end
end
return 'ok'
