"""The operator's SV1 probe: `sv2-probe URL` connects like a miner (see probe.py)."""
