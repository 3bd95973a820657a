"""Benchmarks run by make: `make bench` (mock_engine.py); `make bench-e2e` is tests/e2e/bench.py."""
