"""Entry point for ``python3 -m torrust_maint``."""

import sys

from torrust_maint.cli import main

sys.exit(main())
