"""``python -m flows`` is ``python -m flows.train``."""

import sys

from flows.train import main

sys.exit(main())
