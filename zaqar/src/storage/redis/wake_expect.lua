-- A long poll is about to wait for a queue (see wake.rs): KEYS[1] =
-- <Q>:polled, ARGV[1] = how long it may wait, in ms. Keeps the key alive
-- for at least that long (never shortens what another waiter asked for),
-- so that posts on any server process publish their wake-up meanwhile.
-- Redis' own clock expires it: the key is only a hint to publish, and a
-- waiter that misses a wake-up still finds the message at its next poll.
local ms = tonumber(ARGV[1])
if not ms or ms ~= math.floor(ms) or ms < 1 or ms > 86400000 then
  return redis.error_reply('ERR wake_expect: ARGV[1] must be an integer in 1..86400000')
end
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
return 1
