"""Projects: list, create, get, change, delete, share."""

from __future__ import annotations

from ..access import can_manage_project, require, require_read
from ..serialize import project as project_json
from ..store.entities import DELETED, Project
from ..store.errors import BAD_REQUEST, TrackingError, invalid, not_found
from .base import BaseHandler

#: Ids are 64-bit integers in every back end; a larger one cannot exist.
MAX_ID = 2**63 - 1


def _text(body: dict, key: str, *, nullable: bool = False) -> None:
    """400 unless ``body[key]``, if given, is a string (or, if ``nullable``, null)."""
    if key in body and not isinstance(body[key], str) and not (nullable and body[key] is None):
        raise invalid(f"{key} must be a string, got {body[key]!r}")


class ProjectBaseHandler(BaseHandler):
    """Finds projects, with 404 for ones the caller may not see."""

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


class ProjectListHandler(ProjectBaseHandler):
    """``/api/v1/projects``."""

    def get(self) -> None:
        """Projects the caller may read, paged: ``{"items", "_pagination"}``."""
        viewer = self.viewer
        ids = self.store.visible_project_ids(
            user=viewer.name, groups=sorted(viewer.groups), admin=viewer.admin
        )
        token, size = self.page_args()
        page = self.store.search_projects(
            ids=ids, name_like=self.get_argument("name_like", None), page_token=token,
            max_results=size,
        )  # fmt: skip
        self.write_json(
            {
                "items": [project_json(p) for p in page.items],
                "_pagination": {"next_token": page.next_token},
            }
        )

    def post(self) -> None:
        """Create ``{"name", "group"?, "description"?, "tags"?}``; group must be the caller's."""
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
            body.get("name"), owner=viewer.name, group=group, tags=tags,
            description=body.get("description") or "",
        )  # fmt: skip
        self.write_json(project_json(created), 201)


class ProjectHandler(ProjectBaseHandler):
    """``/api/v1/projects/{id}``."""

    def get(self, project_id: str) -> None:
        """One project."""
        self.write_json(project_json(self.find_project(project_id)))

    def patch(self, project_id: str) -> None:
        """Rename or describe (owner and admins)."""
        project = self.find_project(project_id)
        require(can_manage_project(self.viewer, project), "only the owner may change a project")
        body = self.json_body()
        changes = {k: v for k, v in body.items() if k in ("name", "description")}
        if set(body) - set(changes):
            raise TrackingError(
                f"unknown field(s): {', '.join(sorted(set(body) - set(changes)))}", BAD_REQUEST
            )
        _text(body, "description")
        self.write_json(project_json(self.store.update_project(project.id, **changes)))

    def delete(self, project_id: str) -> None:
        """Mark deleted (restorable)."""
        project = self.find_project(project_id)
        require(can_manage_project(self.viewer, project), "only the owner may delete a project")
        self.store.update_project(project.id, lifecycle_stage=DELETED)
        self.set_status(204)
        self.finish()


class ShareHandler(ProjectBaseHandler):
    """``/api/v1/projects/{id}/shares/{group}``: an explicit share with another group."""

    def put(self, project_id: str, group: str) -> None:
        """Share the project with ``group`` (read access for its members)."""
        project = self.find_project(project_id)
        require(can_manage_project(self.viewer, project), "only the owner may share a project")
        self.write_json(project_json(self.store.share_project(project.id, group)))

    def delete(self, project_id: str, group: str) -> None:
        """Stop sharing with ``group``."""
        project = self.find_project(project_id)
        require(can_manage_project(self.viewer, project), "only the owner may share a project")
        self.write_json(project_json(self.store.share_project(project.id, group, share=False)))


default_handlers = [
    (r"/api/v1/projects", ProjectListHandler),
    (r"/api/v1/projects/([^/]+)", ProjectHandler),
    (r"/api/v1/projects/([^/]+)/shares/([^/]+)", ShareHandler),
]
