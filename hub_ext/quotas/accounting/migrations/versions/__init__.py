"""Revisions of the usage database, oldest first (Alembic reads them by path)."""
