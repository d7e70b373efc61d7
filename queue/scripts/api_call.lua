-- api_call: records one mutating call of the HTTP API on sluice.events
-- (dev.sluice.api.call): who (the token's name, "" while the API is open),
-- what (method and path) and how it was answered (the HTTP status).
--
-- ARGV[1] key prefix, ARGV[2] run the path names ("" for none), ARGV[3] the
-- message key (the run, or the pipeline of a trigger; "" for none),
-- ARGV[4] token name, ARGV[5] method, ARGV[6] path, ARGV[7] status.
-- Returns 1.
local P, run, key = ARGV[1], ARGV[2], ARGV[3]
local data = {
  token = ARGV[4] ~= '' and ARGV[4] or cjson.null,
  method = ARGV[5],
  path = ARGV[6],
  status = tonumber(ARGV[7]),
}
if run ~= '' and redis.call('EXISTS', P .. 'run:' .. run) == 1 then
  emit(P, 'api.call', run, 'runs/' .. run, data)
  return 1
end
-- Not about a run that exists: the envelope emit() writes, without the
-- run's fields.
local id, _, time = sluice_event_id(P)
local subject = 'api' .. string.gsub(ARGV[6], '^/api/v1', '')
local event = cjson.encode({
  specversion = '1.0',
  id = id,
  source = 'sluice',
  type = 'dev.sluice.api.call',
  subject = subject,
  time = time,
  datacontenttype = 'application/json',
  data = data,
})
outbox_add(P, '@events', key, event)
return 1
