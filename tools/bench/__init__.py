"""The benchmark command (``python -m tools.bench.run``) and its focused benchmarks."""
