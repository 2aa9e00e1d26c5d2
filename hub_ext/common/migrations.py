"""Alembic schema upgrades, run when a service opens its database (no ini file, no admin step).

Each database (the tracking one of ``experiments``, the usage one of ``quotas``) has its own
migration package: an ``env.py`` that calls :func:`run_env`, and ``versions/``. A service
opens its database through :meth:`Migrations.upgrade`, which brings the schema to the newest
revision before the first query:

- one transaction for the whole upgrade, so a failure leaves the database as it was
  (PostgreSQL's DDL is transactional; on SQLite the transaction is opened by hand, as
  pysqlite would otherwise commit each DDL statement on its own);
- one process at a time: ``BEGIN IMMEDIATE`` takes SQLite's write lock, a transaction-scoped
  advisory lock serialises PostgreSQL; whoever waits finds the schema current and does
  nothing;
- a database already at the newest revision costs one ``SELECT``;
- a database written by a newer latticehub (a revision this code does not know) is refused
  with the fix, never guessed at.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

#: URL schemes the SQL back ends take (``postgresql+psycopg`` etc. count as ``postgresql``)
SQL_SCHEMES = ("sqlite", "postgresql")


def require_sql_url(url: str, what: str) -> str:
    """``url`` if a SQL back end handles its scheme, else a ``ValueError`` naming the fix."""
    scheme = str(url).split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in SQL_SCHEMES:
        raise ValueError(
            f"{what} URL {url!r}: the scheme {scheme!r} has no back end; use "
            "sqlite:////path/to/file.sqlite (one host) or postgresql://user:pw@host/db"
        )
    return url


class SchemaTooNew(RuntimeError):
    """The database was upgraded by a newer latticehub than this one."""


@dataclass(frozen=True)
class Migrations:
    """The migration scripts of one database.

    Attributes:
        package: the package holding ``env.py`` and ``versions/``.
        version_table: where Alembic keeps the revision (one name per database, so two
            databases may share one PostgreSQL schema).
        what: the database in messages, e.g. ``"tracking database"``.
    """

    package: str
    version_table: str
    what: str

    @property
    def lock_key(self) -> int:
        """The PostgreSQL advisory lock key of this database's upgrades (stable per name)."""
        return zlib.crc32(self.version_table.encode())

    def config(self, connection: Connection | None = None) -> Any:
        """An Alembic ``Config`` for this package (built in code; no alembic.ini)."""
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(resources.files(self.package)))
        cfg.attributes["version_table"] = self.version_table
        if connection is not None:
            cfg.attributes["connection"] = connection
        return cfg

    @functools.cached_property
    def _script(self) -> Any:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.config())

    def head(self) -> str:
        """The newest revision this code knows."""
        head = self._script.get_current_head()
        assert head is not None, f"{self.package} has no revisions"
        return head

    def current(self, engine_or_connection: Engine | Connection) -> str | None:
        """The database's revision (``None``: empty, or written before Alembic)."""
        from alembic.runtime.migration import MigrationContext

        def read(conn: Connection) -> str | None:
            context = MigrationContext.configure(conn, opts={"version_table": self.version_table})
            return context.get_current_revision()

        if isinstance(engine_or_connection, Connection):
            return read(engine_or_connection)
        with engine_or_connection.connect() as conn:
            return read(conn)

    def _check_known(self, revision: str | None) -> None:
        if revision is None:
            return
        from alembic.util import CommandError

        try:
            known = self._script.get_revision(revision)
        except CommandError:
            known = None
        if known is None:
            raise SchemaTooNew(
                f"the {self.what} is at schema revision {revision!r}, which this latticehub "
                f"does not know (newest here: {self.head()!r}): a newer latticehub upgraded it; "
                "upgrade latticehub (or restore the database from before that upgrade)"
            )

    def upgrade(self, engine: Engine, revision: str = "head") -> str | None:
        """Bring the schema to ``revision`` in one locked transaction; returns the revision.

        Raises:
            SchemaTooNew: if a newer latticehub wrote the database.
        """
        if revision == "head":
            now = self.current(engine)
            self._check_known(now)
            if now == self.head():
                return now
        return self._run(engine, "upgrade", revision)

    def downgrade(self, engine: Engine, revision: str) -> str | None:
        """Go back to ``revision`` (e.g. to hand the database to an older release)."""
        return self._run(engine, "downgrade", revision)

    def _run(self, engine: Engine, verb: str, revision: str) -> str | None:
        from alembic import command

        with engine.begin() as conn:
            lock(conn, self.lock_key)
            self._check_known(self.current(conn))  # read under the lock
            getattr(command, verb)(self.config(conn), revision)
            return self.current(conn)


def lock(conn: Connection, key: int) -> None:
    """Hold the database's upgrade lock until ``conn``'s transaction ends."""
    if conn.dialect.name == "sqlite":
        raw = conn.connection.dbapi_connection
        if raw is not None and not raw.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, now (busy_timeout waits)
    elif conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def run_env(context: Any, metadata: sa.MetaData, *, table_prefix: str) -> None:
    """The body of a migration package's ``env.py``.

    Args:
        context: ``alembic.context``.
        metadata: the tables the revisions must produce (what ``compare`` checks against).
        table_prefix: this database's tables start with it; others sharing the database
            (another service's) are left out of comparisons.
    """
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run these migrations through hub_ext.common.migrations.Migrations (the services do "
            "on start; `python -m hub_ext.experiments db upgrade` for the tracking database)"
        )

    def include_name(name: str | None, type_: str, _parents: Any) -> bool:
        return type_ != "table" or bool(name and name.startswith(table_prefix))

    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=config.attributes["version_table"],
        include_name=include_name,
        compare_type=True,
        # SQLite alters a table by copying it: autogenerate writes batch operations there
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def compare(migrations: Migrations, engine: Engine, metadata: sa.MetaData, prefix: str) -> list:
    """Differences between the database and ``metadata`` (empty: the schema matches)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    def include_name(name: str | None, type_: str, _parents: Any) -> bool:
        return type_ != "table" or bool(name and name.startswith(prefix))

    def include_object(item: Any, _name: Any, type_: str, reflected: bool, _other: Any) -> bool:
        # an index the models create on another database only (``Index.ddl_if``)
        only = getattr(item, "_ddl_if", None) if type_ == "index" and not reflected else None
        dialects = getattr(only, "dialect", None)
        if isinstance(dialects, str):
            dialects = (dialects,)
        return not dialects or engine.dialect.name in dialects

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": migrations.version_table,
                "include_name": include_name,
                "include_object": include_object,
                "compare_type": True,
                "target_metadata": metadata,
            },
        )
        return compare_metadata(context, metadata)


# -- the admin command -------------------------------------------------------------------
def command_main(
    migrations: Migrations,
    metadata: sa.MetaData,
    table_prefix: str,
    argv: list[str] | None = None,
    *,
    prog: str,
    url_env: str,
) -> int:
    """``current | upgrade | downgrade REV | check`` for one database; the exit status.

    Services upgrade their database when they open it; this is for looking first, for
    upgrading before a start, and for going back to hand a database to an older release.
    """
    import argparse
    import os

    from sqlalchemy.engine import make_url

    from .db import create_engine

    parser = argparse.ArgumentParser(prog=prog, description=command_main.__doc__)
    parser.add_argument(
        "action",
        choices=["current", "upgrade", "downgrade", "check"],
        help="current: the database's revision and the newest here; upgrade: to the newest; "
        "downgrade REV: back to REV (0001: what latticehub 0.1 opens); check: exit 1 if the "
        "schema differs from this release's models",
    )
    parser.add_argument("revision", nargs="?", help="target of downgrade (or upgrade)")
    parser.add_argument("--db-url", default=os.environ.get(url_env), help=f"default: ${url_env}")
    args = parser.parse_args(argv)
    if not args.db_url:
        parser.error(f"give --db-url (or set ${url_env})")
    if args.action == "downgrade" and not args.revision:
        parser.error("downgrade needs the revision to go back to, e.g. 0001")
    try:
        url = require_sql_url(args.db_url, migrations.what)
    except ValueError as e:
        parser.error(str(e))
    shown = make_url(url).render_as_string(hide_password=True)
    engine = create_engine(url)
    try:
        if args.action == "current":
            now = migrations.current(engine)
            print(
                f"{migrations.what} {shown}: revision {now or '(none)'}, newest {migrations.head()}"
            )
        elif args.action == "upgrade":
            print(
                f"{migrations.what}: now at {migrations.upgrade(engine, args.revision or 'head')}"
            )
        elif args.action == "downgrade":
            print(f"{migrations.what}: now at {migrations.downgrade(engine, args.revision)}")
        else:
            diffs = compare(migrations, engine, metadata, table_prefix)
            for diff in diffs:
                print(diff)
            print(f"{migrations.what}: {len(diffs)} difference(s) from the models")
            return 1 if diffs else 0
    except SchemaTooNew as e:
        print(e)
        return 2
    finally:
        engine.dispose()
    return 0
