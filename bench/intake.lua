-- wrk script for bench/intake.py: every request is the same signed GitHub
-- push, each with its own X-GitHub-Delivery, so that every 2xx from sluice is
-- a run really recorded (a repeated delivery would be answered from the
-- deduplication key and cost less).
--
-- Arguments after "--": body file, X-Hub-Signature-256 value, X-GitHub-Hook-ID,
-- a hex nonce that makes the deliveries of this wrk run unique.
--
-- done() prints one line "WRK {json}" with wrk's counts and latencies and the
-- number of requests written, so the caller can tell how many were still in
-- flight when wrk stopped: wrk abandons those, but the server got them.

local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("thread_id", next_id)
   table.insert(threads, thread)
end

local headers, body, nonce

function init(args)
   local f = assert(io.open(args[1], "rb"))
   body = f:read("*a")
   f:close()
   nonce = args[4]
   headers = {
      ["User-Agent"] = "GitHub-Hookshot/5b4a2c1",
      ["Accept"] = "*/*",
      ["Content-Type"] = "application/json",
      ["X-GitHub-Event"] = "push",
      ["X-GitHub-Hook-ID"] = args[3],
      ["X-GitHub-Hook-Installation-Target-Type"] = "repository",
      ["X-GitHub-Hook-Installation-Target-ID"] = "186853002",
      ["X-Hub-Signature-256"] = args[2],
   }
   written = 0
end

-- Globals, not locals: thread:get() reads them from done().
function request()
   written = written + 1
   headers["X-GitHub-Delivery"] = string.format("%s-%04x-4000-8000-%012x", nonce,
                                                thread_id, written)
   return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
   local total = 0
   for _, t in ipairs(threads) do
      total = total + t:get("written")
   end
   local e = summary.errors
   io.write(string.format(
      'WRK {"duration_us": %d, "requests": %d, "written": %d, "status_errors": %d, ' ..
      '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
      summary.duration, summary.requests, total, e.status, e.connect, e.read, e.write,
      e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max))
end
