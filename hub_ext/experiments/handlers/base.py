"""The base handler: identity from the Hub, JSON in and out, errors mapped to HTTP once.

The caller is found in the async ``prepare`` (:class:`~hub_ext.common.handlers.ServiceHandler`)
and so are their groups, when the Hub's model does not show them: no request to the Hub
blocks the event loop. Handlers then read ``self.viewer`` and ``self.current_user`` as
plain attributes.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from tornado import web

from latticehub.columnar import MetricColumns

from ...common.handlers import ServiceError, ServiceHandler
from ...common.hub_client import GroupCache, HubUnreachable
from .. import access
from ..access import can_write_run, require, require_read
from ..jobs.tokens import job_tokens_in
from ..store.abstract import MAX_PAGE_SIZE, AbstractStore
from ..store.entities import Project, Run, Viewer
from ..store.errors import BAD_REQUEST, PERMISSION_DENIED, UNAUTHENTICATED, TrackingError

#: The default limit of a request body other than an artifact upload, in bytes (the service's
#: ``ExperimentsApp.max_json_body`` sets the one in use, as the ``max_json_body`` setting).
MAX_JSON_BODY = 4 * 1024 * 1024
#: The largest integer the databases store (64-bit signed).
MAX_INT = 2**63 - 1
#: The Hub scope (declared in ``c.JupyterHub.custom_scopes``) that lets a Hub *service* read
#: every group's usage: artifact storage (``/api/v1/storage``) and queued and running jobs
#: (``GET /api/v1/jobs``). The quotas service holds it; a service token reaches nothing else.
USAGE_READ_SCOPE = "custom:latticehub-usage:read"


def _gunzip(data: bytes, limit: int) -> bytes:
    """``data`` inflated, at most ``limit`` bytes; 400 when it is not gzip, 413 when larger."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as e:
        raise TrackingError(
            f"The body is not valid gzip ({e}): compress it with gzip, or send it plain "
            "without Content-Encoding",
            BAD_REQUEST,
        ) from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise web.HTTPError(
            413,
            "The gzip body inflates past this service's limit of %d bytes: send less per request",
            limit,
        )
    return out


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON: send finite numbers (or strings)")


class _GroupsNotKnown(Exception):
    """Only awaiting the Hub can tell the groups of ``name`` (internal to job tokens)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class BaseHandler(ServiceHandler):
    """Shared by every API handler: ``self.store``, ``self.viewer``, ``self.json_body()``."""

    domain_errors = (TrackingError, ServiceError)

    @property
    def store(self) -> AbstractStore:
        """The tracking store, injected through the application settings."""
        return self.settings["store"]

    @property
    def group_cache(self) -> GroupCache:
        """Callers' groups as the Hub tells (``group_lookup``), kept for a few seconds.

        Answers are kept at most ``access.MEMBERSHIP_MAX_AGE_S`` seconds (the Hub token cache
        keeps models as long), so that a removal from a group takes effect on every request
        within 5 s.
        """
        cache = self.settings.get("group_cache")
        if not isinstance(cache, GroupCache):
            cache = GroupCache(
                self.settings["group_lookup"], max_age=lambda: access.MEMBERSHIP_MAX_AGE_S
            )
            self.settings["group_cache"] = cache
        return cache

    @property
    def viewer(self) -> Viewer:
        """The authenticated caller, found in ``prepare``; 401 if there is none.

        A job token, however it is spelled, is this service's own credential: it is checked
        here and never handed to the Hub, and it speaks only for its one run.
        """
        error: Exception | None = getattr(self, "_viewer_error", None)
        if error is not None:
            raise error
        found: Viewer | None = getattr(self, "_found_viewer", None)
        if found is None:
            raise RuntimeError("the viewer is found in prepare(): call super().prepare() first")
        return found

    def hub_identity_wanted(self) -> bool:
        """Never ask the Hub about a request that presents a job token."""
        return not self._claimed_job_tokens()

    def wants_login(self) -> bool:
        """A browser (GET for HTML) without a session goes through Hub OAuth login."""
        return self.request.method in ("GET", "HEAD") and "text/html" in self.request.headers.get(
            "Accept", ""
        )

    async def prepare(self) -> None:
        """Identify the caller and find their groups (or send a browser to log in).

        A caller who may not use a route learns it when the route reads ``self.viewer``.
        """
        await super().prepare()
        if self._finished:
            return
        try:
            self._found_viewer = await self._find_viewer()
        except (TrackingError, ServiceError) as e:
            self._viewer_error = e

    async def _find_viewer(self) -> Viewer:
        claimed = self._claimed_job_tokens()
        if claimed:
            return await self._job_token_viewer(claimed)
        model = self.current_user
        if not model:
            raise TrackingError(
                "Authentication required: send 'Authorization: token <Hub API token>' or log "
                "in through the Hub",
                UNAUTHENTICATED,
            )
        if model.get("kind") == "service":
            # a service's token never acts as a user of the same name (least privilege)
            raise TrackingError(
                f"the Hub service {model.get('name')!r} may not use this API as a user: "
                "services may only read usage (GET /api/v1/storage and GET /api/v1/jobs, "
                f"with the scope {USAGE_READ_SCOPE})",
                PERMISSION_DENIED,
            )
        return Viewer(
            name=model["name"],
            groups=frozenset(await self.groups_of(model)),
            admin=bool(model.get("admin")),
        )

    def usage_reader(self) -> bool:
        """Whether the caller is a Hub service that may read every group's usage.

        Only :data:`USAGE_READ_SCOPE` makes it so; every other route refuses services.
        """
        if self._claimed_job_tokens():
            return False
        model = self.current_user or {}
        return model.get("kind") == "service" and USAGE_READ_SCOPE in (model.get("scopes") or ())

    async def _job_token_viewer(self, claimed: list[str]) -> Viewer:
        """The viewer of the job token(s) the request presents.

        Raises:
            TrackingError: 401 for a job token that is unknown, revoked or expired, or when
                jobs are off on this service.
        """
        manager = self.settings.get("jobs")
        if manager is None:
            raise TrackingError("job tokens are not accepted: jobs are off", UNAUTHENTICATED)
        viewers = {await self._job_token_viewer_of(manager, token) for token in claimed}
        if len(viewers) != 1:
            raise TrackingError("send one job token, not several", UNAUTHENTICATED)
        return viewers.pop()

    async def _job_token_viewer_of(self, manager: Any, token: str) -> Viewer:
        """One token's viewer: one token lookup while its user's groups are known (usual)."""
        try:
            return manager.viewer_for_token(token, self._known_groups)
        except _GroupsNotKnown as miss:
            user = miss.name
        asked = {user: await self.groups_of_user(user)}
        return manager.viewer_for_token(
            token, lambda name: asked[name] if name in asked else self._known_groups(name)
        )

    def _known_groups(self, name: str) -> list[str]:
        found = self.group_cache.known(name)
        if found is None:
            raise _GroupsNotKnown(name)
        return found

    def _claimed_job_tokens(self) -> list[str]:
        """The job tokens the request presents, in any spelling (read once per request)."""
        claimed: list[str] | None = getattr(self, "_job_tokens", None)
        if claimed is None:
            claimed = job_tokens_in(self.request.headers, self.get_query_arguments("token"))
            self._job_tokens = claimed
        return claimed

    async def groups_of(self, model: dict) -> list[str]:
        """A Hub caller's groups: from the Hub's model, else asked with the service's token."""
        if "groups" in model:
            return list(model["groups"])
        # tokens with few scopes do not show groups: ask the Hub with the service's token
        return await self.groups_of_user(model["name"])

    async def groups_of_user(self, name: str) -> list[str]:
        """The groups of Hub user ``name`` (kept ``access.MEMBERSHIP_MAX_AGE_S`` seconds).

        Raises:
            ServiceError: 502 when the Hub cannot be reached.
        """
        try:
            return await self.group_cache.groups(name)
        except HubUnreachable as e:
            raise ServiceError(
                502,
                f"the groups of {name} are unknown: {e.message}; try again shortly",
                "TEMPORARILY_UNAVAILABLE",
            ) from None

    async def new_owner_lookup(self, project: Project, owner: str) -> Callable[[str], list[str]]:
        """``name -> groups`` for :func:`~.projects.checked_new_owner`, asked beforehand.

        The new owner's groups are awaited from the Hub only when the caller may give the
        project away (others get their 403 without a Hub request).
        """
        owner = owner.strip() if isinstance(owner, str) else ""
        known: dict[str, list[str]] = {}
        if (
            owner
            and project.group is not None
            and access.can_transfer_project(
                self.viewer, project, access.group_rights(self.current_user)
            )
        ):
            known[owner] = await self.groups_of_user(owner)
        return lambda name: known.get(name, [])

    def _groups_of(self, model: dict) -> list[str]:
        """A caller's groups without waiting: from the model, or as recently asked.

        For code that cannot await; :meth:`groups_of` is the way to ask the Hub.

        Raises:
            RuntimeError: when only the Hub can tell now.
        """
        if "groups" in model:
            return list(model["groups"])
        found = self.group_cache.known(model["name"])
        if found is None:
            raise RuntimeError(
                f"the groups of {model['name']} are not known now: use await groups_of(model)"
            )
        return found

    def find_run(self, run_id: str, *, data: bool = True) -> Run:
        """The run, if the caller may read its project; else 404 (existence not shown).

        ``data=False``: without params, tags and metrics (a cheaper check before a write).
        """
        viewer = self.viewer  # 401 before anything about the run is looked up
        found, project = self.store.get_run_and_project(run_id, data=data)
        require_read(viewer, project, f"Run with id={run_id}")
        return found

    def writable_run(self, run_id: str, *, data: bool = True) -> Run:
        """The run, if the caller may write it; 404 if unseen, 403 if read-only."""
        found = self.find_run(run_id, data=data)
        require(can_write_run(self.viewer, found), f"you may read but not write run {run_id}")
        self.touched_run = found.id
        return found

    # -- live readers -----------------------------------------------------------------------
    touched_run: str | None = None
    #: what of ``touched_run`` changed (LiveBus topics); empty: everything
    touched_topics: tuple[str, ...] = ()

    def publish_metrics(self, run_id: str, metrics: Any) -> None:
        """Hand stored metric points to live readers of the run (NaN, infinities as strings)."""
        bus = self.settings.get("live")
        if bus is not None and metrics:
            bus.publish_metrics(run_id, metrics)  # serialized when a reader asks

    def publish_columns(self, run_id: str, columns: Sequence[MetricColumns]) -> None:
        """Hand stored metric columns to live readers of the run (no object per point)."""
        bus = self.settings.get("live")
        if bus is not None and columns:
            bus.publish_columns(run_id, columns)

    def on_finish(self) -> None:
        """After a successful write to a run, wake the run's live readers."""
        bus = self.settings.get("live")
        if self.touched_run and bus is not None and self.get_status() < 400:
            bus.notify(self.touched_run, *self.touched_topics)

    def json_body(self) -> dict[str, Any]:
        """The request's JSON object; 400 with the reason when it is not one.

        A body over the ``max_json_body`` setting is refused by the application before it is
        read (:mod:`hub_ext.bodylimits`); the check here is the backstop (413).
        """
        limit = self.settings.get("max_json_body") or MAX_JSON_BODY
        if len(self.request.body) > limit:
            raise web.HTTPError(
                413,
                "Request body of %d bytes is over this service's limit of %d bytes "
                "for JSON requests: send less per request",
                len(self.request.body),
                limit,
            )
        raw = self.request.body
        encoding = self.request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding == "gzip":
            raw = _gunzip(raw, limit)  # the JSON limit holds for the inflated body too
        elif encoding not in ("", "identity"):
            raise TrackingError(
                f"Content-Encoding {encoding!r} is not supported: send gzip or no encoding",
                BAD_REQUEST,
            )
        try:
            body = json.loads(raw or b"{}", parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as e:
            raise TrackingError(f"Malformed JSON body: {e}", BAD_REQUEST) from None
        if not isinstance(body, dict):
            raise TrackingError("The JSON body must be an object", BAD_REQUEST)
        return body

    def int_argument(
        self, name: str, default: int, *, minimum: int = 0, maximum: int = MAX_INT, hint: str = ""
    ) -> int:
        """An integer query argument in ``minimum..maximum``; else 400 naming the range.

        Args:
            name: the query argument.
            default: its value when it is not sent.
            minimum: the smallest value allowed.
            maximum: the largest value allowed (at most 64 bits).
            hint: for a value over ``maximum``, how to do without it, e.g.
                ``"page with offset"``.
        """
        raw = self.get_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise TrackingError(f"{name}={raw!r} must be an integer", BAD_REQUEST) from None
        if not minimum <= value <= maximum:
            more = f": {hint}" if hint and value > maximum else ""
            raise TrackingError(
                f"{name}={value} must be in {minimum}..{maximum}{more}", BAD_REQUEST
            )
        return value

    def page_args(self, maximum: int = MAX_PAGE_SIZE) -> tuple[str | None, int]:
        """``page_token`` and ``max_results`` (default 100, 1..``maximum``) from the query.

        Raises:
            TrackingError: 400 for a page size that is not an integer in range.
        """
        token = self.get_argument("page_token", None)
        size = self.int_argument(
            "max_results", 100, minimum=1, maximum=maximum, hint="follow next_token for more"
        )
        return token, size
