"""The harness's own performance benchmarks: `make bench` (`python -m bench`).

Each benchmark measures a ratio or a throughput side by side in one run,
prints its target next to the measured figure, and `python -m bench`
records the last result with a description of the machine in
bench/RESULTS.md. These are benchmarks, not tests: nothing here asserts.
"""
