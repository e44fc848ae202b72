-- A wake-up for a queue's long polls (see wake.rs), published only while a
-- request of some server process waits for the queue: KEYS[1] =
-- <Q>:polled, ARGV[1] = the channel, ARGV[2] = the message. Returns the
-- number of processes that received it (0 when nobody waits).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('PUBLISH', ARGV[1], ARGV[2])
