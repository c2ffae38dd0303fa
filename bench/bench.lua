-- wrk script for bench/run.py, shared by both systems and both workloads.
--   wrk -s bench/bench.lua http://127.0.0.1:PORT -- <jangar|pocketbase> <append|list> <session-ids-file>
-- Every request picks one of the sessions in the file at random. done() prints one
-- "BENCH key=value ..." line that run.py parses (latencies in microseconds).

local threads, nthreads = {}, 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end

local CONTENT = "hello from the benchmark; a short chat message of about one hundred bytes, give or take."
local JSON = { ["Content-Type"] = "application/json" }
local requests_for = {} -- one precomputed request per session (list workload)
local sessions, op, system, marker, seq

local function urlencode(s)
  return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function init(args)
  system, op = args[1], args[2]
  sessions = {}
  for line in io.lines(args[3]) do
    if #line > 0 then sessions[#sessions + 1] = line end
  end
  math.randomseed(os.time() * 7919 + tid)
  seq, bad = 0, 0 -- `bad` is global so done() can read it with thread:get
  if system == "jangar" then
    marker = '"status"%s*:%s*"success"'
  elseif op == "append" then
    marker = '"id"%s*:'
  else
    marker = '"items"%s*:'
  end
  if op == "list" then
    for i, s in ipairs(sessions) do
      if system == "jangar" then
        requests_for[i] = wrk.format("POST", "/api/query", JSON, string.format(
          '{"path":"chatMessages:listBySession","args":{"sessionId":"%s","limit":50},"format":"json"}', s))
      else
        requests_for[i] = wrk.format("GET", "/api/collections/messages/records?filter="
          .. urlencode("session='" .. s .. "'") .. "&sort=-createdAt&perPage=50&skipTotal=1")
      end
    end
  end
end

function request()
  local i = math.random(#sessions)
  if op == "list" then return requests_for[i] end
  seq = seq + 1
  local body
  if system == "jangar" then
    body = string.format('{"path":"chatMessages:append","args":{"sessionId":"%s","role":"user","content":"%s %d"},"format":"json"}',
      sessions[i], CONTENT, seq)
  else
    body = string.format('{"session":"%s","role":"user","content":"%s %d","createdAt":%d}',
      sessions[i], CONTENT, seq, os.time() * 1000)
  end
  return wrk.format("POST", system == "jangar" and "/api/mutation" or "/api/collections/messages/records", JSON, body)
end

-- A 2xx whose body is not a success (e.g. a Convex-style {"status":"error"}) counts as bad.
function response(status, headers, body)
  if status >= 200 and status < 300 and not (body and body:find(marker)) then bad = bad + 1 end
end

function done(summary, latency, requests)
  local badbody = 0
  for _, t in ipairs(threads) do badbody = badbody + (t:get("bad") or 0) end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%d "
      .. "non2xx=%d connect=%d read=%d write=%d timeout=%d badbody=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.status, e.connect, e.read, e.write,
    e.timeout, badbody))
end
