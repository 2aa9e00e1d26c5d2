"""``python -m hub_ext.culling``."""

from .app import main

main()
