"""make bench-chain: the data plane on loopback measured against an SV1 floor (run.py)."""
