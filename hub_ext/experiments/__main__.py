"""``python -m hub_ext.experiments`` (``... db current|upgrade|...``: the database's schema)."""

import sys

if sys.argv[1:2] == ["db"]:
    from .cli import db_command

    sys.exit(db_command(sys.argv[2:]))

from ..parent import obey_interrupt  # noqa: E402 - the service only
from .app import main  # noqa: E402

obey_interrupt()
main()
