"""`python -m sv1_probe`, the same as the `sv2-probe` command."""

import sys

from sv1_probe.probe import main

sys.exit(main())
