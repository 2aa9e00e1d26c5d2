"""Projects: list, create, get, change, give to another owner, delete, share.

Who may do what is :mod:`..access`: members write, a share is read access, the owner (while
a member), the group's managers and admins manage, managers and admins transfer ownership.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..access import (
    GroupRights,
    can_manage_project,
    can_transfer_project,
    find_project_by_name,
    group_rights,
    require,
    require_read,
    visible_project_ids,
)
from ..likematch import LikePatternError, check_like_pattern
from ..serialize import project as project_json
from ..store.entities import DELETED, Project, Viewer
from ..store.errors import BAD_REQUEST, TrackingError, invalid, not_found
from .base import BaseHandler
from .schemas import PAGING, STR_MAP, PathItems, Query, obj, operation, ref

#: Ids are 64-bit integers in every back end; a larger one cannot exist.
MAX_ID = 2**63 - 1
#: Fields of ``PATCH /projects/{id}``.
CHANGEABLE = ("name", "description", "owner")


def _text(body: dict, key: str, *, nullable: bool = False) -> None:
    """400 unless ``body[key]``, if given, is a string (or, if ``nullable``, null)."""
    if key in body and not isinstance(body[key], str) and not (nullable and body[key] is None):
        raise invalid(f"{key} must be a string, got {body[key]!r}")


def manage_refusal(project: Project, action: str) -> str:
    """The 403 message for a caller who may not ``action`` the project."""
    managers = f"managers of group {project.group!r}, " if project.group else ""
    return (
        f"only the owner of project {project.id} ({project.owner}, while a member of its "
        f"group), {managers}or an admin may {action} it"
    )


def checked_new_owner(
    viewer: Viewer,
    rights: GroupRights,
    project: Project,
    owner: str,
    group_lookup: Callable[[str], list[str]],
) -> str:
    """``owner`` if ``viewer`` may give ``project`` to them; else 403 / 400.

    Args:
        viewer: the caller.
        rights: the groups the caller manages.
        project: the project to give away.
        owner: the new owner's Hub user name.
        group_lookup: ``name -> groups`` as the Hub tells (the service's own token).
    """
    if project.group:
        who = f"managers of group {project.group!r} (Hub scope groups!group={project.group})"
    else:
        who = "admins (a private project belongs to no group)"
    require(
        can_transfer_project(viewer, project, rights),
        f"only {who}{' and admins' if project.group else ''} may give project {project.id} "
        "to another owner",
    )
    owner = owner.strip()
    if not owner:
        raise invalid("owner must be the name of a Hub user")
    if project.group is not None and project.group not in group_lookup(owner):
        raise invalid(
            f"{owner} is not a member of group {project.group!r}: add them to the group "
            "first (the owner of a group's project must be able to write it)"
        )
    return owner


class ProjectBaseHandler(BaseHandler):
    """Finds projects, with 404 for ones the caller may not see."""

    @property
    def rights(self) -> GroupRights:
        """The groups the caller manages (scopes of their Hub token; none for job tokens)."""
        cached: GroupRights | None = getattr(self, "_cached_rights", None)
        if cached is None:
            self.viewer  # noqa: B018 - authenticate (401) before anything else
            cached = self._cached_rights = group_rights(self.current_user)
        return cached

    def find_project(self, project_id: str) -> Project:
        """The project, if the caller may read it; else 404."""
        try:
            number = int(project_id)
        except ValueError:
            raise invalid(f"project id {project_id!r} must be an integer") from None
        if not 0 < number <= MAX_ID:
            raise not_found(f"Experiment with id '{project_id}'")
        project = self.store.get_project(number)
        require_read(self.viewer, project, f"Experiment with id '{project_id}'")
        return project

    def require_manage(self, project: Project, action: str) -> None:
        """403 unless the caller may ``action`` (rename, delete, share...) the project."""
        require(
            can_manage_project(self.viewer, project, self.rights), manage_refusal(project, action)
        )


class ProjectListHandler(ProjectBaseHandler):
    """``/api/v1/projects``."""

    def get(self) -> None:
        """Projects the caller may read, paged: ``{"items", "_pagination"}``.

        ``name``: the one project that name (or ``group/name``) means to the caller, as
        when a run or a job names its project (an empty list if none).
        """
        viewer = self.viewer
        name = self.get_argument("name", None)
        if name is not None:
            found = find_project_by_name(self.store, viewer, name)
            self.write_json(
                {
                    "items": [project_json(found)] if found else [],
                    "_pagination": {"next_token": None},
                }
            )
            return
        token, size = self.page_args()
        name_like = self.get_argument("name_like", None)
        if name_like is not None:
            try:
                check_like_pattern(name_like, "name_like")
            except LikePatternError as e:
                raise invalid(str(e)) from None
        page = self.store.search_projects(
            ids=visible_project_ids(self.store, viewer),
            name_like=name_like, page_token=token, max_results=size,
        )  # fmt: skip
        self.write_json(
            {
                "items": [project_json(p) for p in page.items],
                "_pagination": {"next_token": page.next_token},
            }
        )

    def post(self) -> None:
        """Create ``{"name", "group"?, "description"?, "tags"?}``; group must be the caller's.

        Names are unique per group (per owner for private projects): another group's use of
        a name neither blocks nor shows.
        """
        viewer = self.viewer
        require(viewer.run_id is None, "job tokens cannot create projects")
        body = self.json_body()
        unknown = set(body) - {"name", "group", "description", "tags"}
        if unknown:
            raise TrackingError(f"unknown field(s): {', '.join(sorted(unknown))}", BAD_REQUEST)
        group = body.get("group")
        if group is not None and not isinstance(group, str):
            raise invalid(f"group must be the name of one of your groups (or null), not {group!r}")
        _text(body, "description", nullable=True)
        if group is not None and group not in viewer.groups and not viewer.admin:
            raise invalid(
                f"you are not a member of group {group!r}; use one of your groups "
                f"({', '.join(sorted(viewer.groups)) or 'none'}) or leave group empty for a "
                "private project"
            )
        tags = body.get("tags") or {}
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise invalid("tags must be an object of strings")
        created = self.store.create_project(
            body.get("name"), owner=viewer.name, group=group, tags=tags,  # type: ignore[arg-type]
            description=body.get("description") or "",
        )  # fmt: skip
        self.write_json(project_json(created), 201)


class ProjectHandler(ProjectBaseHandler):
    """``/api/v1/projects/{id}``."""

    def get(self, project_id: str) -> None:
        """One project."""
        self.write_json(project_json(self.find_project(project_id)))

    async def patch(self, project_id: str) -> None:
        """Rename or describe (owner, managers, admins); ``owner``: give it to another user.

        A new owner of a group's project must be a member of that group; only managers of
        the group and admins may give a project away (admins alone a private one).
        """
        project = self.find_project(project_id)
        body = self.json_body()
        unknown = set(body) - set(CHANGEABLE)
        if unknown:
            raise TrackingError(
                f"unknown field(s): {', '.join(sorted(unknown))}; a project's changeable "
                f"fields are {', '.join(CHANGEABLE)}",
                BAD_REQUEST,
            )
        _text(body, "description")
        _text(body, "owner")
        changes: dict[str, Any] = {k: body[k] for k in ("name", "description") if k in body}
        if changes:
            self.require_manage(project, "change")
        if "owner" in body and body["owner"] != project.owner:
            changes["owner"] = checked_new_owner(
                self.viewer, self.rights, project, body["owner"],
                await self.new_owner_lookup(project, body["owner"]),
            )  # fmt: skip
        if not changes:
            self.write_json(project_json(project))
            return
        self.write_json(project_json(self.store.update_project(project.id, **changes)))

    def delete(self, project_id: str) -> None:
        """Mark deleted (restorable)."""
        project = self.find_project(project_id)
        self.require_manage(project, "delete")
        self.store.update_project(project.id, lifecycle_stage=DELETED)
        self.set_status(204)
        self.finish()


class ShareHandler(ProjectBaseHandler):
    """``/api/v1/projects/{id}/shares/{group}``: an explicit share with another group."""

    def put(self, project_id: str, group: str) -> None:
        """Share the project with ``group``: its members may read, not write."""
        project = self.find_project(project_id)
        self.require_manage(project, "share")
        self.write_json(project_json(self.store.share_project(project.id, group)))

    def delete(self, project_id: str, group: str) -> None:
        """Stop sharing with ``group``."""
        project = self.find_project(project_id)
        self.require_manage(project, "share")
        self.write_json(project_json(self.store.share_project(project.id, group, share=False)))


default_handlers = [
    (r"/api/v1/projects", ProjectListHandler),
    (r"/api/v1/projects/([^/]+)", ProjectHandler),
    (r"/api/v1/projects/([^/]+)/shares/([^/]+)", ShareHandler),
]

#: OpenAPI path items of this module's routes, assembled by :mod:`.openapi`.
openapi_paths: PathItems = {
    "/api/v1/projects": {
        "get": operation(
            "Projects you may read",
            query=(
                Query("name", "string", "exact name, or group/name (~/name: private); at most one"),
                Query("name_like", "string", "SQL LIKE"),
                *PAGING,
            ),
            returns=ref("ProjectPage"),
        ),
        "post": operation(
            "Create a project (in one of your groups, or private)",
            ok=201,
            returns=ref("Project"),
            body=obj(
                {
                    "name": {"type": "string", "minLength": 1, "maxLength": 500},
                    "group": {"type": ["string", "null"], "description": "null: private"},
                    "description": {"type": ["string", "null"]},
                    "tags": {**STR_MAP, "type": ["object", "null"]},
                },
                ("name",),
            ),
        ),
    },
    "/api/v1/projects/{project_id}": {
        "get": operation("One project", returns=ref("Project")),
        "patch": operation(
            "Rename or describe (owner); transfer to another owner (group managers, admins)",
            returns=ref("Project"),
            body=obj(
                {
                    "name": {"type": "string", "minLength": 1, "maxLength": 500},
                    "description": {"type": "string"},
                    "owner": {
                        "type": "string",
                        "description": "new owner, a member of the project's group",
                    },
                }
            ),
        ),
        "delete": operation("Delete (owner; restorable)", ok=204),
    },
    "/api/v1/projects/{project_id}/shares/{group}": {
        "put": operation("Share with a group (owner)", returns=ref("Project")),
        "delete": operation("Stop sharing (owner)", returns=ref("Project")),
    },
}
