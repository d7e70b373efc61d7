-- handback: a worker that stops gives a stage attempt it will not finish
-- back to the queue, so another worker runs it without waiting for the
-- lease to expire.
--
-- ARGV[1] key prefix, ARGV[2] run, ARGV[3] stage, ARGV[4] attempt,
-- ARGV[5] worker token, ARGV[6] job topic, ARGV[7] job envelope.
-- Returns "handed-back", or "fenced" when the attempt is no longer this
-- worker's.
local P, run, stage, attempt, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local skey = P .. 'run:' .. run .. ':stage:' .. stage
local st = redis.call('HMGET', skey, 'status', 'attempt', 'worker')
if st[1] ~= 'running' or st[2] ~= attempt or st[3] ~= token then
  return 'fenced'
end
redis.call('HSET', skey, 'status', 'queued')
redis.call('HDEL', skey, 'worker', 'started')
local lkey = P .. 'lease:' .. run .. ':' .. stage
if redis.call('GET', lkey) == token .. '/' .. attempt then
  redis.call('DEL', lkey)
end
redis.call('ZREM', P .. 'leases', run .. '/' .. stage)
redis.call('XADD', P .. 'outbox', '*', 'topic', ARGV[6], 'key', run, 'value', ARGV[7])
return 'handed-back'
