"""The chain stage of make e2e: a private-signet stack's stored configs driving the real Bitcoin Core,
sv2-tp (through the node image's own scripts under supervisord), pool_sv2, translator_sv2 and the
operator's SV1 probe, on loopback (check.py)."""
