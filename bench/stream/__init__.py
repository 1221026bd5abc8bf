"""Stream benchmarks: catch-up throughput and lag under ingress load."""
