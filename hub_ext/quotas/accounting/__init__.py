"""Usage accounting: server sessions recorded from the engine, summed per group and user.

See :mod:`.sessions` (pure sums), :mod:`.store` (SQLite / PostgreSQL), :mod:`.recorder`
(engine events and listings) and :mod:`.plot` (the page's chart).
"""
