"""make e2e, stage "pods": a private-signet stack as real pods on a real node agent (docs/testing.md)."""
