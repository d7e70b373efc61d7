-- events: prepended by tools/embed-lua.sh to every script that calls it.
--
-- emit() records a CloudEvents 1.0 event for sluice.events in the outbox,
-- in the same script as the state change it reports, so that an event is
-- published if and only if the change happened. The envelope is the one
-- queue/envelope.c writes and validates: specversion, id, source, type,
-- subject, time (RFC 3339, UTC, milliseconds), datacontenttype, data.
-- "@events" is the topic's name without the configured prefix; the outbox
-- adds the prefix when it publishes.

-- Days since 1970-01-01 → civil date (Howard Hinnant's algorithm).
local function sluice_civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then
    y = y + 1
  end
  return y, m, d
end

local function sluice_rfc3339(ms)
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local y, m, d = sluice_civil(days)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, ms % 1000)
end

local function sluice_now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The clock and the ids of a script's events and jobs. A script is one
-- moment: its events share one reading of the clock, and one INCR of
-- events:seq numbers up to SLUICE_IDS_PER_SEQ of them (the sequence number
-- of an id is seq * SLUICE_IDS_PER_SEQ + the event's place).
local SLUICE_IDS_PER_SEQ = 4096
local sluice_emit_ms, sluice_emit_time, sluice_emit_seq, sluice_emit_n

-- Returns an id for a message of this script, its time in ms and that time
-- as RFC 3339 text.
local function sluice_event_id(P)
  if not sluice_emit_ms then
    sluice_emit_ms = sluice_now_ms()
    sluice_emit_time = sluice_rfc3339(sluice_emit_ms)
  end
  if not sluice_emit_seq or sluice_emit_n == SLUICE_IDS_PER_SEQ then
    sluice_emit_seq = redis.call('INCR', P .. 'events:seq') * SLUICE_IDS_PER_SEQ
    sluice_emit_n = 0
  end
  local id = string.format('%x-%x', sluice_emit_ms, sluice_emit_seq + sluice_emit_n)
  sluice_emit_n = sluice_emit_n + 1
  return id, sluice_emit_ms, sluice_emit_time
end

-- Messages for Kafka go into two streams: events (topic "@events") into
-- outbox:events, which one dispatcher at a time publishes in the order the
-- scripts wrote them, so that a run's events reach sluice.events in order;
-- every other message (jobs, results, dead letters) into outbox, which any
-- process's dispatcher may publish (queue/outbox.c). Each message is an
-- entry of its own, unless the script holds them (outbox_hold): then they
-- gather and outbox_flush writes them as entries of up to
-- SLUICE_HELD_PER_ENTRY messages each (fields topic, key, value repeated, in
-- order), one XADD for many messages.
local SLUICE_HELD_PER_ENTRY = 128
local SLUICE_STREAMS = {'outbox', 'outbox:events'}
local sluice_held

local function sluice_stream_of(topic)
  return topic == '@events' and 'outbox:events' or 'outbox'
end

local function sluice_flush_stream(P, stream)
  local t = sluice_held[stream]
  if #t > 0 then
    redis.call('XADD', P .. stream, '*', unpack(t))
    sluice_held[stream] = {}
  end
end

local function outbox_flush(P)
  if sluice_held then
    for _, stream in ipairs(SLUICE_STREAMS) do
      sluice_flush_stream(P, stream)
    end
  end
  sluice_held = nil
end

local function outbox_hold()
  sluice_held = {['outbox'] = {}, ['outbox:events'] = {}}
end

local function outbox_add(P, topic, key, value)
  local stream = sluice_stream_of(topic)
  if not sluice_held then
    redis.call('XADD', P .. stream, '*', 'topic', topic, 'key', key, 'value', value)
    return
  end
  local t = sluice_held[stream]
  local n = #t
  t[n + 1], t[n + 2] = 'topic', topic
  t[n + 3], t[n + 4] = 'key', key
  t[n + 5], t[n + 6] = 'value', value
  if n + 6 == 6 * SLUICE_HELD_PER_ENTRY then
    sluice_flush_stream(P, stream)
  end
end

-- type: the suffix after "dev.sluice." (e.g. "stage.finished"); run keys the
-- message so one run's events stay in order; subject like
-- "runs/<run>/stages/<stage>"; data a table. The run's id, pipeline,
-- repository, sha and ref are added to data (read from the run unless the
-- caller gave them all), so that a consumer (such as the commit statuses)
-- needs nothing but the event.
local function emit(P, type, run, subject, data)
  local id, _, time = sluice_event_id(P)
  data.run = run
  if not (data.pipeline and data.repository and data.sha and data.ref) then
    local r = redis.call('HMGET', P .. 'run:' .. run, 'pipeline', 'repository', 'sha', 'ref')
    data.pipeline = data.pipeline or r[1] or nil
    data.repository = data.repository or r[2] or nil
    data.sha = data.sha or r[3] or nil
    data.ref = data.ref or r[4] or nil
  end
  if type == 'run.finished' or type == 'run.cancelled' then
    -- Counted here, by whichever process ends the run, for the agents'
    -- sluice_runs_finished_total.
    redis.call('HINCRBY', P .. 'runs:finished',
               tostring(data.pipeline or '') .. '/' .. tostring(data.status), 1)
  end
  local event = cjson.encode({
    specversion = '1.0',
    id = id,
    source = 'sluice',
    type = 'dev.sluice.' .. type,
    subject = subject,
    time = time,
    datacontenttype = 'application/json',
    data = data,
  })
  outbox_add(P, '@events', run, event)
end

-- An event whose text the caller wrote but for its head (agent/record.c,
-- with queue/envelope.c): rest holds the members from "source" to the end
-- of the object, and is written after the specversion and the id and time
-- this script gives it, as in emit.
local function emit_prepared(P, run, rest)
  local id, _, time = sluice_event_id(P)
  outbox_add(P, '@events', run,
             '{"specversion":"1.0","id":"' .. id .. '","time":"' .. time .. '",' .. rest)
end

-- An event about one attempt of a stage: data gains stage and attempt, the
-- subject is "runs/<run>/stages/<stage>/attempts/<attempt>". A deployment's
-- stage.queued names its environment, whichever script queues it (a
-- promotion, a retry's back-off or a timed pause over, a worker gone).
local function emit_stage(P, type, run, stage, attempt, data)
  data.stage = stage
  data.attempt = tonumber(attempt)
  if type == 'stage.queued' and not data.env and string.sub(stage, 1, 7) == 'deploy@' then
    data.env = string.sub(stage, 8)
  end
  emit(P, type, run, 'runs/' .. run .. '/stages/' .. stage .. '/attempts/' .. attempt, data)
end
