-- wrk script for bench/run.py: print exact totals and latency percentiles
-- in one machine-readable line (no per-request hooks, so wrk stays fast).
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCH bytes=%d duration_us=%d requests=%d p50_us=%d p99_us=%d " ..
        "errors=%d status_errors=%d\n",
        summary.bytes, summary.duration, summary.requests,
        latency:percentile(50), latency:percentile(99),
        e.connect + e.read + e.write + e.timeout, e.status))
end
