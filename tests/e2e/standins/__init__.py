"""Stand-ins for the two plugins no registry serves (the Python language host, pulumi-random),
installed by install.sh and checked with the real CLI by check.py."""
