"""Analytics benchmarks: sink throughput, batch latency under queries, the report."""
