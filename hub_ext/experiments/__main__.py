"""``python -m hub_ext.experiments``."""

from .app import main

main()
