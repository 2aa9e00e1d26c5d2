"""Who may read and write what (pure policy).

A project belongs to a group (readable by its members) or is private to its owner;
sharing with another group is explicit. Runs are readable where their project is, and
writable by their owner, by admins and by the job token minted for that one run.
"""

from __future__ import annotations

from .store.entities import Project, Run, Viewer
from .store.errors import PERMISSION_DENIED, TrackingError, not_found


def can_read_project(viewer: Viewer, project: Project) -> bool:
    """Members of the owning or a sharing group, the owner, admins."""
    if viewer.admin or project.owner == viewer.name:
        return True
    groups = set(viewer.groups)
    return (project.group is not None and project.group in groups) or bool(
        groups & set(project.shared_with)
    )


def can_write_project(viewer: Viewer, project: Project) -> bool:
    """Runs may be created in a project by anyone who may read it (not job tokens)."""
    return viewer.run_id is None and can_read_project(viewer, project)


def can_manage_project(viewer: Viewer, project: Project) -> bool:
    """Rename, delete, share: the owner and admins."""
    return viewer.run_id is None and (viewer.admin or project.owner == viewer.name)


def can_write_run(viewer: Viewer, run: Run) -> bool:
    """The run's owner, admins, or the job token bound to this run."""
    if viewer.run_id is not None:
        return viewer.run_id == run.id
    return viewer.admin or run.user == viewer.name


def require_read(viewer: Viewer, project: Project, what: str) -> None:
    """404 (not 403) for what the viewer may not see: existence is not disclosed."""
    if not can_read_project(viewer, project):
        raise not_found(what)


def require(allowed: bool, message: str) -> None:
    """403 with ``message`` unless ``allowed``."""
    if not allowed:
        raise TrackingError(message, PERMISSION_DENIED)
