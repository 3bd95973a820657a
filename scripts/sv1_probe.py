"""The probe's old invocation, `python -m scripts.sv1_probe`: an alias of `sv2-probe`."""

import sys

from sv1_probe.probe import main

if __name__ == "__main__":
    sys.exit(main())
