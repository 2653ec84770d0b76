"""Speed and memory benchmarks: `make bench` (= `python -m benchmarks.run`); see docs/performance.md."""
