"""``python -m hub_ext.quotas``."""

from ..parent import obey_interrupt
from .app import main

obey_interrupt()
main()
