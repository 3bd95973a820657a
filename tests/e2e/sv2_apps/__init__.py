"""The real pool_sv2 and translator_sv2 on each stack's rendered configs, on loopback (check.py;
why these crates, and what fake-tp is: README.md)."""
