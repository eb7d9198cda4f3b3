"""``python -m robustness`` (what torchrun launches)."""

import sys

from robustness.cli import main

sys.exit(main())
