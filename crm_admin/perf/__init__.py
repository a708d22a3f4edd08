"""Performance tooling: the reproducible data generator and the benchmark runner."""
