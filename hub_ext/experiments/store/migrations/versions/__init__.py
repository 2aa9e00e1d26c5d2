"""Revisions of the tracking database, oldest first (Alembic reads them by path)."""
