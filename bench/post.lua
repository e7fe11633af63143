-- wrk script: POST the body file given in BENCH_BODY with a unique
-- X-Webhook-Id per request, so every request is a new durable event.
local f = assert(io.open(os.getenv("BENCH_BODY") or "bench/body-1k.json"))
local body = f:read("*a")
f:close()
local threads = {}
function setup(thread)
	thread:set("tid", #threads)
	table.insert(threads, thread)
end
function init(args)
	math.randomseed(os.time() + tid * 7919)
	prefix = string.format("%d-%d-", math.random(1, 1e9), tid)
	counter = 0
end
function request()
	counter = counter + 1
	return wrk.format("POST", nil, {
		["Content-Type"] = "application/json",
		["X-Webhook-Id"] = prefix .. counter,
	}, body)
end
