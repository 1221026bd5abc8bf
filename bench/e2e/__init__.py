"""Whole-stack benchmarks: freshness (POST to final row in DuckDB)."""
