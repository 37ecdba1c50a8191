-- wrk script for bench/run_bench.py: one GET per request, sent through a
-- forward proxy in absolute form.
--
--   BENCH_PATH   request target: "http://127.0.0.1:ORIGINPORT/1k" through a
--                proxy (absolute form), "/1k" straight at the origin
--   BENCH_HOST   Host header, "127.0.0.1:ORIGINPORT" (the origin, not the proxy)
--   BENCH_CLOSE  "1" adds "Connection: close" (one request per connection)
--
-- done() prints one line "BENCH_RESULT {json}" that the harness parses.

wrk.method = "GET"
wrk.path = os.getenv("BENCH_PATH") or "/"
local host = os.getenv("BENCH_HOST")
if host and host ~= "" then
  wrk.headers["Host"] = host
end
if os.getenv("BENCH_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
