"""The base handler: identity from the Hub, JSON in and out, errors mapped to HTTP once."""

from __future__ import annotations

import json
import time
from typing import Any

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from ..access import can_write_run, require, require_read
from ..jobs.tokens import job_tokens_in
from ..store.abstract import MAX_PAGE_SIZE, AbstractStore
from ..store.entities import Run, Viewer
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


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON: send finite numbers (or strings)")


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    """Shared by every API handler: ``self.store``, ``self.viewer``, ``self.json_body()``."""

    @property
    def store(self) -> AbstractStore:
        """The tracking store, injected through the application settings."""
        return self.settings["store"]

    @property
    def hub_auth(self) -> Any:  # noqa: D102 - from HubAuthenticated
        return self.settings["hub_auth"]

    @property
    def viewer(self) -> Viewer:
        """The authenticated caller (computed once per request); 401 if there is none.

        A job token, however it is spelled, is this service's own credential: it is checked
        here and never handed to the Hub, and it speaks only for its one run.
        """
        cached: Viewer | None = getattr(self, "_cached_viewer", None)
        if cached is not None:
            return cached
        job_viewer = self._job_token_viewer()
        if job_viewer is not None:
            self._cached_viewer = job_viewer
            return job_viewer
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
        self._cached_viewer = Viewer(
            name=model["name"],
            groups=frozenset(self._groups_of(model)),
            admin=bool(model.get("admin")),
        )
        return self._cached_viewer

    def usage_reader(self) -> bool:
        """Whether the caller is a Hub service that may read every group's usage.

        Only :data:`USAGE_READ_SCOPE` makes it so; every other route refuses services.
        """
        if self._claimed_job_tokens():
            return False
        model = self.current_user or {}
        return model.get("kind") == "service" and USAGE_READ_SCOPE in (model.get("scopes") or ())

    def _job_token_viewer(self) -> Viewer | None:
        """The viewer of a job token the request presents; None when it presents none.

        Raises:
            TrackingError: 401 for a job token that is unknown, revoked or expired, or when
                jobs are off on this service.
        """
        claimed = self._claimed_job_tokens()
        if not claimed:
            return None
        manager = self.settings.get("jobs")
        if manager is None:
            raise TrackingError("job tokens are not accepted: jobs are off", UNAUTHENTICATED)
        viewers = {
            manager.viewer_for_token(token, lambda name: self._groups_of({"name": name}))
            for token in claimed
        }
        if len(viewers) != 1:
            raise TrackingError("send one job token, not several", UNAUTHENTICATED)
        return viewers.pop()

    def _claimed_job_tokens(self) -> list[str]:
        """The job tokens the request presents, in any spelling (read once per request)."""
        claimed: list[str] | None = getattr(self, "_job_tokens", None)
        if claimed is None:
            claimed = job_tokens_in(self.request.headers, self.get_query_arguments("token"))
            self._job_tokens = claimed
        return claimed

    def get_current_user(self) -> Any:
        """Hub identity, never for a request that presents a job token (no Hub lookup)."""
        if self._claimed_job_tokens():
            return None
        return super().get_current_user()

    def _groups_of(self, model: dict) -> list[str]:
        """The caller's groups: from the Hub's model, else asked with the service's token.

        Answers are kept at most ``access.MEMBERSHIP_MAX_AGE_S`` seconds (the Hub token cache
        keeps models as long), so that a removal from a group takes effect on every request
        within 5 s.
        """
        from ..access import MEMBERSHIP_MAX_AGE_S

        if "groups" in model:
            return list(model["groups"])
        # tokens with few scopes do not show groups: ask the Hub with the service's token
        cache: dict = self.settings.setdefault("group_cache", {})
        name = model["name"]
        now = time.monotonic()
        cached = cache.get(name)
        if cached and cached[0] > now:
            return cached[1]
        if len(cache) > 10_000:  # forget answers past their age (one entry per caller)
            for key in [k for k, (until, _) in cache.items() if until <= now]:
                del cache[key]
        groups = self.settings["group_lookup"](name)
        cache[name] = (now + MEMBERSHIP_MAX_AGE_S, groups)
        return groups

    def prepare(self) -> None:
        """Send a browser without a session through Hub OAuth login (GET only)."""
        if (
            self.request.method in ("GET", "HEAD")
            and "text/html" in self.request.headers.get("Accept", "")
            and not self.current_user
        ):
            self.redirect(self.get_login_url())

    def find_run(self, run_id: str, *, data: bool = True) -> Run:
        """The run, if the caller may read its project; else 404 (existence not shown).

        ``data=False``: without params, tags and metrics (a cheaper check before a write).
        """
        viewer = self.viewer  # 401 before anything about the run is looked up
        found = self.store.get_run(run_id, data=data)
        project = self.store.get_project(found.project_id)
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
        try:
            body = json.loads(self.request.body or b"{}", parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as e:
            raise TrackingError(f"Malformed JSON body: {e}", BAD_REQUEST) from None
        if not isinstance(body, dict):
            raise TrackingError("The JSON body must be an object", BAD_REQUEST)
        return body

    def write_json(self, data: Any, status: int = 200) -> None:
        """Send ``data`` as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, allow_nan=False))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as JSON: MLflow's ``error_code``/``message`` plus JupyterHub's ``status``."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, TrackingError):
            body = {"error_code": exc.code, "message": exc.message}
        elif isinstance(exc, web.HTTPError):
            message = exc.log_message % exc.args if exc.log_message else self._reason
            code = {
                413: "RESOURCE_LIMIT_EXCEEDED",
                401: "UNAUTHENTICATED",
                403: "PERMISSION_DENIED",
            }
            body = {
                "error_code": code.get(
                    status_code, "BAD_REQUEST" if status_code < 500 else "INTERNAL_ERROR"
                ),
                "message": message,
            }
        else:
            body = {"error_code": "INTERNAL_ERROR", "message": "Internal error"}
        body["status"] = status_code
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Map domain errors to their HTTP status before tornado writes the error."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, TrackingError):
            status_code = exc.http_status
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Domain errors are the caller's mistakes: log them briefly, without traceback."""
        if isinstance(value, TrackingError):
            self.log.info("%s %s: %s", self.request.method, self.request.path, value.message)
        else:
            super().log_exception(typ, value, tb)

    @property
    def log(self) -> Any:  # noqa: D102
        return self.settings["log"]

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
