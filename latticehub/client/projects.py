"""Projects: list, find by name, get, create, change, delete, share (``/api/v1/projects``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import ClientBase, Page, follow, query, segment


class ProjectsAPI(ClientBase):
    """The project endpoints (mixed into :class:`~latticehub.client.TrackingClient`)."""

    def list_projects(
        self,
        *,
        name_like: str | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page:
        """One page of the projects you may read (``GET /projects``).

        Args:
            name_like: an SQL ``LIKE`` pattern on the name (``"phi4-%"``).
            max_results: page size (the service caps it).
            page_token: the ``next_token`` of the previous page.
        """
        params = query(name_like=name_like, max_results=max_results, page_token=page_token)
        return self.page("/projects", params)

    def iter_projects(self, *, name_like: str | None = None) -> Iterator[dict[str, Any]]:
        """Every project you may read (pages followed)."""
        return follow(lambda token: self.list_projects(name_like=name_like, page_token=token))

    def find_project(self, name: str) -> dict[str, Any] | None:
        """The project ``name`` (or ``group/name``) means to you; ``None`` if there is none.

        Resolved as a run or a job resolves its project (``GET /projects?name=``); never
        creates one.
        """
        found = self.request("GET", "/projects", params={"name": name})["items"]
        return found[0] if found else None

    def get_project(self, project_id: int) -> dict[str, Any]:
        """One project by id (``GET /projects/{id}``; 404 if you may not read it)."""
        return self.request("GET", f"/projects/{segment(project_id)}")

    def create_project(
        self,
        name: str,
        group: str | None = None,
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a project (``POST /projects``) in one of your groups, or private (``None``)."""
        body: dict[str, Any] = {"name": name, "group": group}
        if description:
            body["description"] = description
        if tags:
            body["tags"] = tags
        return self.request("POST", "/projects", body)

    def update_project(
        self,
        project_id: int,
        *,
        name: str | None = None,
        description: str | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """Rename, describe or give a project to another owner (``PATCH /projects/{id}``)."""
        body = query(name=name, owner=owner)
        if description is not None:
            body["description"] = description
        return self.request("PATCH", f"/projects/{segment(project_id)}", body)

    def delete_project(self, project_id: int) -> None:
        """Mark a project deleted (``DELETE /projects/{id}``; restorable by an admin)."""
        self.request("DELETE", f"/projects/{segment(project_id)}")

    def share_project(self, project_id: int, group: str, *, share: bool = True) -> dict[str, Any]:
        """Let ``group`` read the project (``PUT .../shares/{group}``); ``share=False`` stops."""
        path = f"/projects/{segment(project_id)}/shares/{segment(group)}"
        return self.request("PUT", path, {}) if share else self.request("DELETE", path)

    def project(self, name: str, group: str | None = None) -> dict[str, Any]:
        """The project called ``name``, created (in ``group``) if it does not exist.

        ``name`` resolves among the projects you may read (``group/name`` picks one group's);
        names are unique per group, so another group's project of that name is never found.
        """
        found = self.find_project(f"{group}/{name}" if group else name)
        return found if found is not None else self.create_project(name, group)
