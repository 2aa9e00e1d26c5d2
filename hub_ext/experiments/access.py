"""Who may read and write what (pure policy).

A project belongs to a group or is private to its owner. The rules (docs/tracking.md#access):

- **read** (runs, artifacts, logs, live streams): members of the project's group, members of
  groups it is shared with, the owner of a private project, admins; a job token reads only
  its own run's project.
- **write** (create runs, submit jobs charged to the group, register versions, move or
  delete aliases): members of the project's group, the owner of a private project, admins.
  A share is read access only; job tokens never write a project (they write their one run).
- **manage** (rename, delete, restore, tag, share): the owner while they may still write it,
  managers of the project's group, admins.
- **transfer ownership**: managers of the project's group, admins (private projects: admins).

Ownership grants nothing by itself in a group's project: an owner who leaves the group loses
access like any other member. A group manager is whoever holds the Hub scope
``groups!group=<name>`` (the rule of :mod:`hub_ext.common.managers`), read from the caller's own
token model, so the service needs no extra rights to know it.

Runs are writable by their owner, by admins and by the job token minted for that one run.
Project names are unique per group (and per owner among private projects):
:func:`resolve_project_name` picks, among the projects a caller may read, the one a name means.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..common.managers import GroupRights, viewer_from_scopes
from .store.entities import Project, Run, Viewer
from .store.errors import PERMISSION_DENIED, TrackingError, invalid, not_found

if TYPE_CHECKING:
    from .store.abstract import AbstractStore

#: Seconds a caller's group membership may be cached: a removal from a group takes effect on
#: every request within 5 s (the Hub token cache and the group cache both use it).
MEMBERSHIP_MAX_AGE_S = 4
#: The qualifier of a caller's own private project in a name (``~/phi4``).
PRIVATE_QUALIFIER = "~"
#: Rights of a caller who manages no group.
NO_GROUPS = GroupRights(name="")


def _job_token(viewer: Viewer) -> bool:
    return viewer.run_id is not None


def _bound_project(viewer: Viewer) -> int | None:
    """The project a job token is bound to (None: not known, use the member rules)."""
    return getattr(viewer, "project_id", None)


def is_member(viewer: Viewer, project: Project) -> bool:
    """Whether the viewer belongs to the project's group (or owns it, if it is private)."""
    if project.group is None:
        return project.owner == viewer.name
    return project.group in viewer.groups


def can_read_project(viewer: Viewer, project: Project) -> bool:
    """Members of the owning group or of a group it is shared with, a private owner, admins.

    A job token reads the project of its run only.
    """
    if _job_token(viewer) and _bound_project(viewer) is not None:
        return project.id == _bound_project(viewer)
    if viewer.admin or is_member(viewer, project):
        return True
    return bool(set(viewer.groups) & set(project.shared_with))


def can_write_project(viewer: Viewer, project: Project) -> bool:
    """Create runs, submit jobs, register versions, set aliases: members and admins.

    Readers through a share may not write, nor may job tokens.
    """
    if _job_token(viewer):
        return False
    return viewer.admin or is_member(viewer, project)


def can_manage_project(viewer: Viewer, project: Project, rights: GroupRights = NO_GROUPS) -> bool:
    """Rename, delete, restore, tag, share: the owner (still a member), group managers, admins.

    Args:
        viewer: the caller.
        project: the project.
        rights: the groups the caller manages (:func:`group_rights`).
    """
    if _job_token(viewer):
        return False
    if viewer.admin or can_transfer_project(viewer, project, rights):
        return True
    return project.owner == viewer.name and is_member(viewer, project)


def can_transfer_project(viewer: Viewer, project: Project, rights: GroupRights = NO_GROUPS) -> bool:
    """Give a project to another owner: managers of its group and admins.

    A private project belongs to no group: only admins may give it away.
    """
    if _job_token(viewer):
        return False
    if viewer.admin:
        return True
    return project.group is not None and rights.can_manage(project.group)


def can_write_run(viewer: Viewer, run: Run) -> bool:
    """The run's owner, admins, or the job token bound to this run."""
    if _job_token(viewer):
        return viewer.run_id == run.id
    return viewer.admin or run.user == viewer.name


def can_register_version(viewer: Viewer, project: Project, run: Run) -> bool:
    """Register a run's artifact as a version: the job token of that run, or a writer of both.

    A reader through a share may not register, not even from a run of their own.
    """
    if _job_token(viewer):
        return viewer.run_id == run.id
    return can_write_project(viewer, project) and can_write_run(viewer, run)


def group_rights(model: Mapping[str, Any] | None) -> GroupRights:
    """The groups a Hub caller manages, from the ``scopes`` of their token model.

    Admins' unfiltered ``groups`` / ``admin:groups`` manage every group; a job token (no
    Hub model) manages none.
    """
    if not model:
        return NO_GROUPS
    return viewer_from_scopes(str(model.get("name") or ""), model.get("scopes") or ())


def visible_project_ids(store: AbstractStore, viewer: Viewer) -> list[int] | None:
    """Ids of the projects the viewer may read (``None``: every project, for admins)."""
    if _job_token(viewer) and _bound_project(viewer) is not None:
        return [_bound_project(viewer)]  # type: ignore[list-item]
    return store.visible_project_ids(
        user=viewer.name, groups=sorted(viewer.groups), admin=viewer.admin
    )


def split_qualified(ref: str) -> tuple[str, str] | None:
    """``(group, name)`` of a qualified name ``group/name`` (``~/name``: private), else None.

    >>> split_qualified("lqcd/phi4-L8")
    ('lqcd', 'phi4-L8')
    >>> split_qualified("phi4-L8") is None
    True
    """
    head, sep, rest = ref.partition("/")
    if not sep or not head or not rest:
        return None
    return head, rest


def _qualified_match(viewer: Viewer, project: Project, head: str, rest: str) -> bool:
    if project.name != rest:
        return False
    if head == PRIVATE_QUALIFIER:
        return project.group is None and project.owner == viewer.name
    return project.group == head


def resolve_project_name(viewer: Viewer, ref: str, candidates: Iterable[Project]) -> Project | None:
    """The project ``ref`` means to ``viewer``, among ``candidates``; None if none.

    Only projects the viewer may read take part, so a name used by another group resolves
    exactly as an unused one. ``group/name`` (``~/name`` for a private project of one's own)
    picks a project in that group; a plain name prefers the viewer's own projects (their
    groups', their private ones) to those only shared with them, so another group's share
    never changes what a name means. Deleted projects count (MLflow's get-by-name shows them).

    Args:
        viewer: the caller.
        ref: a project name, or ``group/name``.
        candidates: the projects called ``ref`` and, for a qualified ``ref``, those called
            its ``name`` part (:meth:`AbstractStore.projects_named`).

    Raises:
        TrackingError: INVALID_PARAMETER_VALUE when the name is ambiguous among the caller's
            own projects, naming the ``group/name`` forms that pick each.
    """
    readable = [p for p in candidates if can_read_project(viewer, p)]
    qualified = split_qualified(ref)
    if qualified is not None:
        picked = [p for p in readable if _qualified_match(viewer, p, *qualified)]
        if len(picked) == 1:
            return picked[0]
    exact = [p for p in readable if p.name == ref]
    own = [p for p in exact if is_member(viewer, p)]
    tier = own or exact
    if len(tier) <= 1:
        return tier[0] if tier else None
    forms = sorted(qualified_name(p) for p in tier)
    raise invalid(
        f"{len(tier)} projects you may read are called {ref!r}: name one of "
        f"{', '.join(repr(f) for f in forms)} (group/name), or use the project's id"
    )


def qualified_name(project: Project) -> str:
    """``group/name`` of a project (``~/name`` for a private one, as its owner writes it)."""
    return f"{project.group or PRIVATE_QUALIFIER}/{project.name}"


def find_project_by_name(store: AbstractStore, viewer: Viewer, ref: str) -> Project | None:
    """The project ``ref`` means to ``viewer`` (:func:`resolve_project_name`), or None.

    This is what a request that names a project calls (the native API, MLflow's
    ``get-experiment-by-name``, job submission).
    """
    names: Sequence[str] = [ref]
    qualified = split_qualified(ref)
    if qualified is not None:
        names = [ref, qualified[1]]
    candidates = {p.id: p for name in names for p in store.projects_named(name)}
    return resolve_project_name(viewer, ref, candidates.values())


def require_read(viewer: Viewer, project: Project, what: str) -> None:
    """404 (not 403) for what the viewer may not see: existence is not disclosed."""
    if not can_read_project(viewer, project):
        raise not_found(what)


def require(allowed: bool, message: str) -> None:
    """403 with ``message`` unless ``allowed``."""
    if not allowed:
        raise TrackingError(message, PERMISSION_DENIED)
