"""`python -m cli` runs the `flexselect-agent` command line."""

import sys

from cli.main import main

sys.exit(main())
