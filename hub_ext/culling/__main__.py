"""``python -m hub_ext.culling``."""

import os

# Read before the imports below: they take seconds on a loaded node, and a Hub killed in
# that window would leave init as the parent this service then compares against.
_HUB_PID = os.getppid()

from ..parent import obey_interrupt  # noqa: E402
from .app import main  # noqa: E402

obey_interrupt()
main(hub_pid=_HUB_PID)
