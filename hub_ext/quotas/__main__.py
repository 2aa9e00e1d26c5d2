"""``python -m hub_ext.quotas``."""

from .app import main

main()
