"""The benchmark harness: suite (``python -m benchmarks.run``), per-job worker
processes, one adapter per library, synthetic datasets, measurement helpers."""
