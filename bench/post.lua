-- wrk script: POST the body file given in BENCH_BODY with a unique
-- X-Webhook-Id per request, so every request is a new durable event.
--
-- Environment:
--   BENCH_BODY   the body file (default bench/body-1k.json)
--   BENCH_TAG    part of every X-Webhook-Id, so that two runs never repeat a
--                key (default: random)
--   BENCH_CLOSE  1: send "Connection: close", so that each request has a
--                connection of its own. wrk opens a new connection after a
--                response that is not keep-alive; its latency then runs from
--                the first byte written, after the TCP handshake.
--
-- At the end prints one line for scripts (latencies in microseconds):
--   wrk: requests= duration_us= connect_errors= read_errors= write_errors=
--        status_errors= timeouts= p50_us= p90_us= p99_us= p999_us= max_us=
-- status_errors counts responses with a status above 399.
local f = assert(io.open(os.getenv("BENCH_BODY") or "bench/body-1k.json"))
local body = f:read("*a")
f:close()
local close = os.getenv("BENCH_CLOSE") == "1"
local tag = os.getenv("BENCH_TAG")
local threads = {}
function setup(thread)
	thread:set("tid", #threads)
	table.insert(threads, thread)
end
function init(args)
	math.randomseed(os.time() + tid * 7919)
	prefix = string.format("%s-%d-", tag or tostring(math.random(1, 1e9)), tid)
	counter = 0
end
function request()
	counter = counter + 1
	local h = {
		["Content-Type"] = "application/json",
		["X-Webhook-Id"] = prefix .. counter,
	}
	if close then
		h["Connection"] = "close"
	end
	return wrk.format("POST", nil, h, body)
end
function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("wrk: requests=%d duration_us=%d connect_errors=%d read_errors=%d " ..
	    "write_errors=%d status_errors=%d timeouts=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
	    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
	    latency:percentile(50), latency:percentile(90), latency:percentile(99),
	    latency:percentile(99.9), latency.max))
end
