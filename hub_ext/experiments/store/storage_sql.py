"""Bytes of artifact storage per bucket (a group, or one owner's private projects), in SQL.

A bucket's bytes are those of the distinct blobs that its runs' artifacts and its registered
versions point to: ``UNION`` (not ``UNION ALL``) of ``(sha256, size)`` pairs, summed.
Deleted runs count until their artifacts are deleted: their blobs are still on disk.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, func, select, union
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from . import schema as t


def _projects_of(group: str | None, owner: str | None) -> ColumnElement[bool]:
    p = t.projects.c
    if group is not None:
        return p.group_name == group
    return and_(p.group_name.is_(None), p.owner == owner)


def _blobs_of(where: ColumnElement[bool], sha256: str | None = None):  # noqa: ANN202
    """``(sha256, size)`` of the distinct blobs of the projects ``where`` picks (a subquery)."""
    a, r, p, v = t.artifacts.c, t.runs.c, t.projects.c, t.artifact_versions.c
    in_runs = (
        select(a.sha256, a.size)
        .select_from(
            t.artifacts.join(t.runs, r.run_id == a.run_id).join(t.projects, p.id == r.project_id)
        )
        .where(where)
    )
    in_registry = (
        select(v.sha256, v.size)
        .select_from(t.artifact_versions.join(t.projects, p.id == v.project_id))
        .where(where)
    )
    if sha256 is not None:
        in_runs = in_runs.where(a.sha256 == sha256)
        in_registry = in_registry.where(v.sha256 == sha256)
    return union(in_runs, in_registry).subquery()


def bucket_bytes(conn: Connection, group: str | None, owner: str | None = None) -> int:
    """Bytes of distinct blobs in ``group`` (``None``: ``owner``'s private projects)."""
    blobs = _blobs_of(_projects_of(group, owner))
    total = conn.execute(select(func.coalesce(func.sum(blobs.c.size), 0))).scalar_one()
    return int(total)


def bucket_holds(conn: Connection, group: str | None, owner: str | None, sha256: str) -> bool:
    """Whether a blob is already counted in the bucket (storing it again adds nothing)."""
    blobs = _blobs_of(_projects_of(group, owner), sha256)
    found = conn.execute(select(blobs.c.sha256).limit(1))
    return found.first() is not None


def groups_with_projects(conn: Connection) -> Sequence[str]:
    """Every group that has a project, sorted."""
    p = t.projects.c
    query = select(p.group_name).where(p.group_name.is_not(None)).distinct()
    return sorted(r[0] for r in conn.execute(query))
