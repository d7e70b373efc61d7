-- outbox_leave: a dispatcher that stops leaves the consumer group of the
-- outbox stream, so that the group does not keep a consumer for every
-- process that ever ran (queue/outbox.c). Not while entries are pending
-- under its name: deleting it would make them unclaimable; they are claimed
-- by another dispatcher later, and the name stays.
--
-- ARGV[1] the stream, ARGV[2] the group, ARGV[3] the dispatcher's name.
-- Returns 1 when it left, 0 when it stays (entries pending) or was not in
-- the group.
local stream, group, name = ARGV[1], ARGV[2], ARGV[3]
local ok, pending = pcall(redis.call, 'XPENDING', stream, group, '-', '+', 1, name)
if not ok or #pending > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
return 1
