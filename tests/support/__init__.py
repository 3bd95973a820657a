"""What the mock tests, `make render`, the benchmarks and the e2e share: the mock-engine harness,
the settings strategies and the project's constants. No test file: nothing here is collected."""
