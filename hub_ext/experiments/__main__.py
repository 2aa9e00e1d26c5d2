"""``python -m hub_ext.experiments``."""

from ..parent import obey_interrupt
from .app import main

obey_interrupt()
main()
