"""`python -m attnlens` runs the command line."""

import sys

from attnlens.cli import main

sys.exit(main())
