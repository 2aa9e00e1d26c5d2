"""Artifact versions, aliases and lineage (the model registry).

``/api/v1/projects/{id}/artifacts`` (names; POST registers a run artifact as the next version
of a name), ``.../artifacts/{name}`` (its versions), ``.../artifacts/{name}/{ref}`` (one
version and its lineage; ``ref`` is ``v3``, ``3``, ``latest`` or an alias), ``.../{ref}/file``
(download), ``.../artifacts/{name}/aliases/{alias}`` (PUT moves, DELETE removes) and
``/api/v1/runs/{id}/uses`` (the versions a run consumed).

Access follows the project (:mod:`..access`): its readers read, including members of groups
it is shared with; registering needs write access to the project and to the producing run (a
job token may register what its run produced); aliases need write access to the project (not
job tokens, not readers through a share); deleting a version, whoever manages the project or
the producing run's owner while still a writer of the project.
"""

from __future__ import annotations

from typing import Any

from ..access import (
    can_manage_project,
    can_register_version,
    can_write_project,
    require,
    visible_project_ids,
)
from ..blobs import clean_artifact_path
from ..store.entities import ACTIVE, Project, Run
from ..store.errors import BAD_REQUEST, INVALID_STATE, TrackingError, invalid, not_found
from ..store.registry import (
    AbstractArtifactRegistry,
    ArtifactName,
    ArtifactUse,
    ArtifactVersion,
    check_alias,
    check_artifact_name,
    parse_selector,
)
from ..store.validation import check_run_id
from .artifacts import ArtifactBase
from .projects import ProjectBaseHandler
from .schemas import BINARY, OBJ, PAGING, PathItems, operation, ref


def _fields(body: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise TrackingError(
            f"unknown field(s): {', '.join(sorted(unknown))}; allowed: "
            f"{', '.join(sorted(allowed))}",
            BAD_REQUEST,
        )
    missing = sorted(required - set(body))
    if missing:
        raise TrackingError(f"missing field(s): {', '.join(missing)}", BAD_REQUEST)


def run_summary(run: Run) -> dict[str, Any]:
    """The few fields of a run that lineage shows."""
    return {
        "id": run.id,
        "name": run.name,
        "project_id": run.project_id,
        "user": run.user,
        "status": run.status.value,
        "start_time": run.start_time,
        "end_time": run.end_time,
    }


def name_json(item: ArtifactName) -> dict[str, Any]:
    """A name with its latest version and aliases."""
    return {
        "name": item.name,
        "project_id": item.project_id,
        "versions": item.versions,
        "latest": item.latest.to_json(),
        "aliases": item.aliases,
    }


def write_refusal(project: Project, what: str) -> str:
    """A 403 message for a reader of ``project`` who may not write it."""
    where = f"members of group {project.group!r}" if project.group else f"its owner {project.owner}"
    return (
        f"you may read but not write project {project.id}: {what} write access, which "
        f"{where} and admins have (a share gives read access only; job tokens write only "
        "their run)"
    )


class RegistryBase(ArtifactBase, ProjectBaseHandler):
    """The registry (from settings), project lookup and the version checks."""

    def register_refusal(self, project: Project, run: Run) -> str:
        """Why the caller may not register a version of ``run`` in ``project``."""
        viewer = self.viewer
        if viewer.run_id is None and not can_write_project(viewer, project):
            return write_refusal(project, "registering a version needs")
        return f"you may read but not write run {run.id}"

    @property
    def registry(self) -> AbstractArtifactRegistry:
        """The artifact registry, injected through the application settings."""
        return self.settings["registry"]

    def version(self, project: Project, name: str, ref: str) -> ArtifactVersion:
        """A version of ``name`` by URL ``ref`` (``v3``, ``3``, ``latest``, an alias)."""
        check_artifact_name(name)
        selector = parse_selector(ref)
        return self.registry.get_version(
            project.id, f"{name}:v{selector}" if isinstance(selector, int) else f"{name}:{selector}"
        )

    def visible(self, uses: list[ArtifactUse], *, consumer: bool) -> list[ArtifactUse]:
        """Uses whose consuming run's (or version's) project the caller may read."""
        ids = visible_project_ids(self.store, self.viewer)
        if ids is None:
            return uses
        allowed = set(ids)
        return [u for u in uses if (u.project_id if consumer else u.version.project_id) in allowed]


class ArtifactNamesHandler(RegistryBase):
    """``/api/v1/projects/{id}/artifacts``."""

    def get(self, project_id: str) -> None:
        """Names with their latest version and aliases, paged."""
        project = self.find_project(project_id)
        token, size = self.page_args()
        page = self.registry.list_names(project.id, page_token=token, max_results=size)
        self.write_json(
            {
                "items": [name_json(item) for item in page.items],
                "_pagination": {"next_token": page.next_token},
            }
        )

    def post(self, project_id: str) -> None:
        """Register a run artifact as the next version of a name."""
        project = self.find_project(project_id)
        body = self.json_body()
        _fields(
            body,
            {"name", "run_id", "path", "description", "metadata", "aliases"},
            {"name", "run_id", "path"},
        )
        name = check_artifact_name(body["name"])
        run_id = check_run_id(body["run_id"])
        path = clean_artifact_path(body["path"])
        description = body.get("description") or ""
        if not isinstance(description, str):
            raise invalid("description must be a string")
        aliases = body.get("aliases") or []
        if not isinstance(aliases, list):
            raise invalid('aliases must be a list of alias names, e.g. ["best"]')
        aliases = [check_alias(a) for a in aliases]
        if project.lifecycle_stage != ACTIVE:
            raise TrackingError(
                f"project {project.id} is deleted: restore it before registering artifacts",
                INVALID_STATE,
            )
        run = self.find_run(run_id)
        if run.project_id != project.id:
            raise invalid(
                f"run {run_id} belongs to project {run.project_id}, not {project.id}: register "
                f"its artifacts under /api/v1/projects/{run.project_id}/artifacts"
            )
        require(
            can_register_version(self.viewer, project, run), self.register_refusal(project, run)
        )
        if aliases:
            require(
                can_write_project(self.viewer, project),
                "setting aliases needs write access to the project (job tokens may register "
                "versions but not set aliases): register without 'aliases'",
            )
        # the blob must not be collected between reading the artifact and the commit
        with self.blobs.referencing():
            record = self.store.get_artifact(run.id, path)
            if not self.blobs.exists(record.sha256):
                raise TrackingError(
                    f"the content of artifact {path!r} of run {run.id} ({record.sha256}) is "
                    "missing from the artifact store: upload the file again",
                    INVALID_STATE,
                )
            created = self.registry.create_version(
                project.id,
                name,
                run_id=run.id,
                sha256=record.sha256,
                size=record.size,
                path=path,
                description=description,
                metadata=body.get("metadata"),
                aliases=aliases,
            )
        self.write_json(created.to_json(), 201)


class ArtifactVersionsHandler(RegistryBase):
    """``/api/v1/projects/{id}/artifacts/{name}``."""

    def get(self, project_id: str, name: str) -> None:
        """The versions of a name, newest first, paged; 404 for a name with none."""
        project = self.find_project(project_id)
        check_artifact_name(name)
        token, size = self.page_args()
        page = self.registry.list_versions(project.id, name, page_token=token, max_results=size)
        if not page.items and not token:
            raise not_found(f"Artifact {name!r} in project {project.id}")
        self.write_json(
            {
                "items": [v.to_json() for v in page.items],
                "_pagination": {"next_token": page.next_token},
            }
        )


class ArtifactVersionHandler(RegistryBase):
    """``/api/v1/projects/{id}/artifacts/{name}/{ref}``."""

    def get(self, project_id: str, name: str, ref: str) -> None:
        """One version with its lineage (producing run, consuming runs you may see)."""
        project = self.find_project(project_id)
        found = self.version(project, name, ref)
        lineage = self.registry.lineage(found)
        try:
            producer: dict[str, Any] | None = run_summary(self.store.get_run(lineage.produced_by))
        except TrackingError:
            producer = None
        consumers = self.visible(list(lineage.consumed_by), consumer=True)
        out = found.to_json()
        out["lineage"] = {
            "produced_by": producer,
            "consumed_by": [u.run_id for u in consumers],
        }
        self.write_json(out)

    def delete(self, project_id: str, name: str, ref: str) -> None:
        """Delete a version (not while aliased): the project's owner or the run's owner."""
        project = self.find_project(project_id)
        found = self.version(project, name, ref)
        viewer = self.viewer
        producer_owner = self.store.get_run(found.run_id).user
        require(
            can_manage_project(viewer, project, self.rights)
            or (can_write_project(viewer, project) and producer_owner == viewer.name),
            f"only whoever manages project {project.id} (its owner, the group's managers, "
            f"admins) or the owner of run {found.run_id}, while a member, may delete "
            f"{found.ref}",
        )
        self.registry.delete_version(project.id, found.name, found.version)
        self.set_status(204)
        self.finish()


class ArtifactFileHandler(RegistryBase):
    """``/api/v1/projects/{id}/artifacts/{name}/{ref}/file``."""

    async def get(self, project_id: str, name: str, ref: str) -> None:
        """Download the version's content (streamed)."""
        project = self.find_project(project_id)
        found = self.version(project, name, ref)
        if not self.blobs.exists(found.sha256):
            raise TrackingError(
                f"the content of {found.ref} ({found.sha256}) is missing from the artifact "
                "store: ask an administrator",
                INVALID_STATE,
            )
        filename = found.path.rsplit("/", 1)[-1] if found.path else found.name
        await self.send_blob(found.sha256, filename)


class AliasHandler(RegistryBase):
    """``/api/v1/projects/{id}/artifacts/{name}/aliases/{alias}``."""

    def _writable(self, project_id: str) -> Project:
        project = self.find_project(project_id)
        require(can_write_project(self.viewer, project), write_refusal(project, "aliases need"))
        return project

    def put(self, project_id: str, name: str, alias: str) -> None:
        """Point the alias at ``{"version": n}`` (creates or moves it)."""
        project = self._writable(project_id)
        check_artifact_name(name)
        check_alias(alias)
        body = self.json_body()
        _fields(body, {"version"}, {"version"})
        number = body["version"]
        if isinstance(number, str):
            number = parse_selector(number)
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number < 2**63:
            raise invalid(f"version must be a version number such as 3 (or 'v3'), not {number!r}")
        self.write_json(self.registry.set_alias(project.id, name, alias, number).to_json())

    def delete(self, project_id: str, name: str, alias: str) -> None:
        """Remove the alias."""
        project = self._writable(project_id)
        check_artifact_name(name)
        check_alias(alias)
        self.registry.delete_alias(project.id, name, alias)
        self.set_status(204)
        self.finish()


class RunUsesHandler(RegistryBase):
    """``/api/v1/runs/{id}/uses``."""

    def get(self, run_id: str) -> None:
        """The versions the run consumed (those you may see), oldest first."""
        self.find_run(run_id)
        uses = self.visible(self.registry.uses_of_run(run_id), consumer=False)
        self.write_json({"items": [{"time": u.time, "version": u.version.to_json()} for u in uses]})

    def post(self, run_id: str) -> None:
        """Record ``{"project": id, "ref": "name:v3"}`` as consumed by the run (idempotent)."""
        run = self.writable_run(run_id)
        body = self.json_body()
        _fields(body, {"project", "ref"}, {"project", "ref"})
        project_ref = body["project"]
        if isinstance(project_ref, bool) or not isinstance(project_ref, int | str):
            raise invalid(f"project must be a project id, not {project_ref!r}")
        project = self.find_project(str(project_ref))
        found = self.registry.get_version(project.id, body["ref"])
        self.registry.record_use(run.id, found.id)
        self.write_json(found.to_json())


_PROJECT = r"/api/v1/projects/([^/]+)/artifacts"
default_handlers = [
    (_PROJECT, ArtifactNamesHandler),
    (_PROJECT + r"/([^/]+)", ArtifactVersionsHandler),
    (_PROJECT + r"/([^/]+)/aliases/([^/]+)", AliasHandler),
    (_PROJECT + r"/([^/]+)/([^/]+)", ArtifactVersionHandler),
    (_PROJECT + r"/([^/]+)/([^/]+)/file", ArtifactFileHandler),
    (r"/api/v1/runs/([0-9a-zA-Z]+)/uses", RunUsesHandler),
]

_VERSION = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "project_id": {"type": "integer"},
        "name": {"type": "string"},
        "version": {"type": "integer"},
        "ref": {"type": "string", "description": "name:v3"},
        "run_id": {"type": "string", "description": "the producing run"},
        "path": {"type": "string", "description": "the run artifact it came from"},
        "sha256": {"type": "string"},
        "size": {"type": "integer"},
        "created": {"type": "integer", "description": "ms since the epoch"},
        "aliases": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"},
        "metadata": OBJ,
    },
}
_NAME = r"[A-Za-z0-9._-]{1,250}"
_ALIAS = "a letter, then letters, digits, '.', '_', '-' (not latest, not v3)"


#: OpenAPI path items of this module's routes, assembled by :mod:`.openapi`.
openapi_paths: PathItems = {
    "/api/v1/projects/{project_id}/artifacts": {
        "get": operation(
            "Artifact names with latest version and aliases",
            query=PAGING,
            returns=ref("ArtifactNamePage"),
        ),
        "post": operation(
            "Register a run artifact as the next version of a name (a writer of the "
            "project and of the run, or the run's job token; aliases need write access "
            "to the project: a share gives read access only)",
            ok=201,
            returns=_VERSION,
            body={
                "type": "object",
                "required": ["name", "run_id", "path"],
                "properties": {
                    "name": {"type": "string", "pattern": f"^{_NAME}$"},
                    "run_id": {"type": "string", "description": "the producing run"},
                    "path": {"type": "string", "description": "an artifact of that run"},
                    "description": {"type": "string"},
                    "metadata": OBJ,
                    "aliases": {"type": "array", "items": {"type": "string"}},
                },
            },
        ),
    },
    "/api/v1/projects/{project_id}/artifacts/{name}": {
        "get": operation(
            "Versions of a name, newest first", query=PAGING, returns=ref("ArtifactVersionPage")
        ),
    },
    "/api/v1/projects/{project_id}/artifacts/{name}/{ref}": {
        "get": operation(
            "One version (ref: v3, 3, latest or an alias) with lineage",
            returns={
                "allOf": [
                    _VERSION,
                    {
                        "type": "object",
                        "properties": {
                            "lineage": {
                                "type": "object",
                                "properties": {
                                    "produced_by": OBJ,
                                    "consumed_by": {"type": "array", "items": {"type": "string"}},
                                },
                            }
                        },
                    },
                ]
            },
        ),
        "delete": operation(
            "Delete a version (who manages the project, or the producing run's owner while a "
            "member)",
            ok=204,
            notes={409: "The version has aliases (move or delete them first)"},
        ),
    },
    "/api/v1/projects/{project_id}/artifacts/{name}/{ref}/file": {
        "get": operation(
            "Download the version's content", returns=BINARY, media="application/octet-stream"
        ),
    },
    "/api/v1/projects/{project_id}/artifacts/{name}/aliases/{alias}": {
        "put": operation(
            f"Point an alias ({_ALIAS}) at a version; moves it atomically (writers of the project)",
            returns=_VERSION,
            body={
                "type": "object",
                "required": ["version"],
                "properties": {"version": {"type": ["integer", "string"]}},
            },
        ),
        "delete": operation("Remove an alias (writers of the project)", ok=204),
    },
    "/api/v1/runs/{run_id}/uses": {
        "get": operation("Artifact versions the run consumed", returns=ref("ArtifactUseList")),
        "post": operation(
            "Record that the run consumed a version (writer of the run; idempotent)",
            returns=_VERSION,
            body={
                "type": "object",
                "required": ["project", "ref"],
                "properties": {
                    "project": {"type": ["integer", "string"], "description": "project id"},
                    "ref": {"type": "string", "description": "name:v3, name:best, name"},
                },
            },
        ),
    },
}
