-- outbox_dead: an outbox entry one of whose messages Kafka refused for good
-- (too large, invalid) is moved to the dead-letter stream, so that it is
-- not produced again and again, and kept there for an operator to read.
--
-- ARGV[1] the outbox stream, ARGV[2] the dead-letter stream, ARGV[3] the
-- entry's id, ARGV[4] the consumer group ("" for the events stream, read
-- without one), ARGV[5] what Kafka said, ARGV[6] now (ms).
-- The dead-letter entry has the fields stream, id, error, at and entry: the
-- entry's fields as they were (topic, key, value, ...; the messages Kafka
-- took were delivered), a JSON array, as one entry may hold thousands.
-- Returns 1, or 0 when the entry is gone already.
local stream, dead, id, group = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local found = redis.call('XRANGE', stream, id, id)
if #found == 0 then
  return 0
end
redis.call('XADD', dead, '*', 'stream', stream, 'id', id, 'error', ARGV[5], 'at', ARGV[6],
           'entry', cjson.encode(found[1][2]))
redis.call('XDEL', stream, id)
if group ~= '' then
  redis.call('XACK', stream, group, id)
end
return 1
