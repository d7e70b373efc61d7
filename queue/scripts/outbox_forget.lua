-- outbox_forget: the consumer group of the outbox stream forgets the
-- dispatchers that went away without leaving it (killed, or stopped with
-- entries pending that another has claimed since), so that it does not
-- keep a consumer for every process that ever ran (queue/outbox.c). A
-- consumer goes once nothing is pending under its name and it has not
-- read for the given time. That may be a live dispatcher that had nothing
-- to read (a read that finds nothing does not count as one in Redis 7.0):
-- its next read that finds entries adds it again, and nothing is lost. A
-- consumer with entries pending always stays: deleting it would make them
-- unclaimable.
--
-- ARGV[1] the stream, ARGV[2] the group, ARGV[3] how long a consumer has
-- not read (ms). Returns how many consumers it forgot.
local stream, group, idle = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', stream, group)
if not ok then
  return 0
end
local forgotten = 0
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do
    f[c[i]] = c[i + 1]
  end
  if f.pending == 0 and f.idle >= idle then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, f.name)
    forgotten = forgotten + 1
  end
end
return forgotten
