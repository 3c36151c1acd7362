"""Benchmarks for svve-core (run with ``uv run python -m benchmarks.<name>``)."""
