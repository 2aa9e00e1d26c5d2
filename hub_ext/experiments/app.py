"""The ``experiments`` service: a small tornado app behind Hub OAuth and Hub tokens.

Run by JupyterHub as a managed service (``python -m hub_ext.experiments``); settings come
from traitlets (command-line aliases) and JupyterHub's service environment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from jupyterhub.services.auth import HubOAuth
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Dict, Float, Int, TraitError, Unicode, default, validate

from ..bodylimits import DEFAULT_DRAIN, DEFAULT_DRAIN_TIMEOUT, BodyLimitedApplication
from ..common.dblocks import HEARTBEAT_SWEEP_KEY, JOB_ADMIT_KEY, JOB_POLL_KEY, AdvisoryLock
from ..common.hub_client import HubSource
from ..common.policyfile import PolicyFileConfig, deprecated_setting
from ..common.service import OAuthCallbackHandler, WebServiceApp
from . import dashboard
from .blobs import BlobStore
from .handlers import base as handlers_base
from .handlers import default_handlers
from .heartbeats import HeartbeatMonitor
from .jobs.settings import JobsConfig
from .live import LiveBus, LiveConfig
from .replicas import ReplicaBridge
from .storage import StorageCaps, parse_storage_caps
from .store import AbstractStore, open_store
from .store.registry import SqlArtifactRegistry


def hub_group_lookup(api_url: str, token: str) -> Any:
    """A coroutine function ``name -> groups`` that asks the Hub with the service's own token.

    It never blocks the event loop (the common async Hub client); a user the Hub does not
    know, or does not let the service read, is in no group.
    """
    return HubSource(api_url, token).groups_of


def shared_cookie_secret(api_token: str) -> bytes:
    """The secret that signs the dashboard's cookies, the same in every replica.

    Derived from the service's Hub API token (every replica holds the same one, and it is
    secret), so that a browser signed in through one replica stays signed in on the others:
    the Hub OAuth state and token cookies and the XSRF tokens are signed with it. A new
    token (a new secret) signs dashboard users out, as a restart did before.
    """
    return hmac.new(api_token.encode(), b"latticehub experiments cookies", hashlib.sha256).digest()


class ExperimentsApplication(BodyLimitedApplication):
    """The service's tornado application: every request body is limited (see bodylimits)."""

    def json_body_limit(self) -> int:
        """``max_json_body`` as configured, else the handlers' ``MAX_JSON_BODY``."""
        return self.settings.get("max_json_body") or handlers_base.MAX_JSON_BODY


def make_app(
    *,
    store: AbstractStore,
    prefix: str,
    hub_auth: Any,
    group_lookup: Any,
    log: Any,
    blobs: BlobStore,
    jobs: Any = None,
    live: LiveBus | None = None,
    registry: Any = None,
    max_json_body: int | None = None,
    refused_body_drain: int = DEFAULT_DRAIN,
    refused_body_drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    storage_caps: StorageCaps | None = None,
    cookie_secret: bytes | None = None,
) -> web.Application:
    """The tornado application with every handler under ``prefix``.

    Args:
        store: the tracking store (injected into handlers through settings).
        prefix: the service's URL prefix, e.g. ``/services/experiments/``.
        hub_auth: a ``HubOAuth`` (or test double) that identifies callers.
        group_lookup: ``name -> list of groups`` for tokens that do not show groups.
        log: the logger.
        blobs: the artifact blob store (its ``max_size`` limits artifact uploads, the only
            bodies that may be larger than ``max_json_body``).
        jobs: the :class:`~hub_ext.experiments.jobs.manager.JobManager` (None: no jobs API).
        live: the change feed that live streams wait on (a new one if None).
        registry: the artifact registry (default: on the store's database).
        max_json_body: the limit in bytes of every other request body (None: the handlers'
            ``MAX_JSON_BODY``); a larger one gets 413 before it is read.
        refused_body_drain: bytes of a refused body read and dropped after its answer, so that
            the proxy and clients that send before they read get the answer (see
            :mod:`hub_ext.bodylimits`).
        refused_body_drain_timeout: seconds that dropping may take at most.
        storage_caps: the artifact storage cap of each group (None: no cap).
        cookie_secret: signs the cookies (None: a random one; replicas need the same, see
            :func:`shared_cookie_secret`).
    """
    live = live or LiveBus()
    registry = registry or SqlArtifactRegistry.for_store(store)
    if jobs is not None:
        jobs.notify = live.notify  # job state changes wake the run's live readers
        # config data references (run:<id>/<path>, name:v3) resolve from these
        jobs.blobs = jobs.blobs or blobs
        jobs.registry = jobs.registry or registry
    handlers = [(url_path_join(prefix, path), handler) for path, handler in default_handlers]
    handlers.append((url_path_join(prefix, "oauth_callback"), OAuthCallbackHandler))
    return ExperimentsApplication(
        handlers,
        max_json_body=max_json_body,
        refused_body_drain=refused_body_drain,
        refused_body_drain_timeout=refused_body_drain_timeout,
        body_limit_hint=(
            " for JSON and form requests: send less per request (split a batch of metrics or "
            "log lines), or upload files as artifacts (PUT "
            f"{url_path_join(prefix, 'api/v1/runs/<run_id>/artifacts/<path>')}). "
            "Administrators set the limit with ExperimentsApp.max_json_body"
        ),
        store=store,
        hub_auth=hub_auth,
        group_lookup=group_lookup,
        log=log,
        blobs=blobs,
        jobs=jobs,
        live=live or LiveBus(),
        registry=registry,
        storage_caps=storage_caps or StorageCaps(),
        events=store.job_store(),  # the run timelines kept beside the runs (None: none)
        template_path=dashboard.TEMPLATE_DIR,
        static_path=dashboard.STATIC_DIR,
        static_url_prefix=url_path_join(prefix, "static/"),
        cookie_secret=cookie_secret or os.urandom(32),
        # HubOAuth checks the XSRF token of every cookie-authenticated request that changes
        # state (token-authenticated API calls need none); forms carry it as ``_xsrf``.
        xsrf_cookies=False,
    )


class ExperimentsApp(WebServiceApp, PolicyFileConfig):
    """Serve the tracking API (``python -m hub_ext.experiments --help``)."""

    default_port = 10101

    name = "latticehub-experiments"
    description = "Experiment tracking service for latticehub (a JupyterHub service)."

    db_url = Unicode(
        help="""
        Tracking database: ``sqlite:////path/tracking.sqlite`` (default, WAL on local
        disk) or ``postgresql://user:pw@host/db``. Default: ``$LATTICEHUB_TRACKING_DB`` or
        ``sqlite:///<artifact_dir>/../tracking.sqlite``.
        """,
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self) -> str:
        return os.environ.get(
            "LATTICEHUB_TRACKING_DB",
            f"sqlite:///{os.path.join(os.path.dirname(self.artifact_dir), 'tracking.sqlite')}",
        )

    artifact_dir = Unicode(
        help="Directory for artifact blobs (shared filesystem in production).",
    ).tag(config=True)

    @default("artifact_dir")
    def _default_artifact_dir(self) -> str:
        return os.environ.get("LATTICEHUB_ARTIFACT_DIR", os.path.abspath("run/artifacts"))

    max_artifact_size = Int(
        10 * 1024**3,
        help="""
        Largest artifact in bytes, e.g. 2 * 1024**3 (default 10 GiB). Uploads are streamed to
        disk, and only after the caller is authenticated and may write the run; a larger one
        gets HTTP 413 (from its Content-Length before any byte is read, or as soon as a
        chunked upload passes the limit).
        """,
    ).tag(config=True)

    max_json_body = Int(
        4 * 1024**2,
        help="""
        Largest request body in bytes of every request except artifact uploads (JSON API
        calls, MLflow calls, dashboard forms), e.g. 8 * 1024**2 (default 4 MiB, four times
        MLflow's 1 MB limit of a log-batch request). It is also the HTTP server's
        ``max_body_size``. A larger body gets HTTP 413 with a JSON error before it is read
        (or, when chunked, as soon as it passes the limit), so that no caller, signed in or
        not, makes the service hold more than this per request. At least 64 KiB.
        """,
    ).tag(config=True)

    refused_body_drain = Int(
        DEFAULT_DRAIN,
        help="""
        Bytes of a refused request body (401, 403, 404 or 413 before the body was read) that
        the service reads and drops after sending the answer, e.g. 64 * 1024**2 (the
        default); 0 closes the connection at once. Closing a connection whose request is
        still arriving resets it: configurable-http-proxy then answers 503 instead of the
        refusal, and clients that send the whole body before reading (Python's urllib, which
        the tracking client uses) see a reset. Past this many bytes (or
        refused_body_drain_timeout) the connection is closed. Reading costs network time
        only: the dropped bytes are never kept.
        """,
    ).tag(config=True)

    refused_body_drain_timeout = Float(
        DEFAULT_DRAIN_TIMEOUT,
        help="""
        Seconds the service goes on reading (and dropping) a refused request body after its
        answer, at most, e.g. 10 (the default); then the connection is closed. See
        refused_body_drain.
        """,
    ).tag(config=True)

    @validate("max_json_body")
    def _valid_json_body(self, proposal: Any) -> int:
        value = proposal["value"]
        if value < 64 * 1024:
            raise TraitError(
                f"max_json_body={value!r} bytes is too small for the API's requests: use at "
                "least 64 KiB, e.g. 4 * 1024**2"
            )
        return int(value)

    @validate("max_artifact_size")
    def _positive_bytes(self, proposal: Any) -> int:
        value = proposal["value"]
        if value <= 0:
            raise TraitError(
                f"max_artifact_size={value!r}: use a positive number of bytes, e.g. 2 * 1024**3"
            )
        return int(value)

    @validate("refused_body_drain")
    def _non_negative_bytes(self, proposal: Any) -> int:
        value = proposal["value"]
        if value < 0:
            raise TraitError(
                f"refused_body_drain={value!r}: use a number of bytes >= 0, "
                "e.g. 64 * 1024**2, or 0 to close at once"
            )
        return int(value)

    @validate("refused_body_drain_timeout")
    def _non_negative_seconds(self, proposal: Any) -> float:
        value = proposal["value"]
        if not value >= 0:
            raise TraitError(
                f"refused_body_drain_timeout={value!r}: use a number of seconds >= 0, e.g. 10"
            )
        return float(value)

    artifact_quota = Dict(
        help="""
        Artifact storage cap per group, e.g. ``{"lqcd": "500G", "*": "100G", "~": "10G"}``:
        keys are group names, ``"*"`` for groups not listed and ``"~"`` for each user's
        private projects (default: the ``"*"`` value); values are bytes or sizes with K, M,
        G, T (powers of 1024), or null for no cap. A group's use is the bytes of the
        distinct blobs its runs' artifacts and registered versions point to. An upload that
        would pass the cap gets HTTP 413 (``STORAGE_QUOTA_EXCEEDED``) before its body is
        read when it declares its size, else as soon as it passes; the quotas pages show
        use against the cap. Default: the policy document's ``artifacts`` values
        (``policy_file``; ``[private]`` gives ``"~"``), else ``{}`` (no cap). The older
        ``$LATTICEHUB_ARTIFACT_QUOTAS`` (JSON) still wins over the document, with a
        deprecation message.
        """,
    ).tag(config=True)

    @default("artifact_quota")
    def _default_artifact_quota(self) -> dict[str, Any]:
        raw = os.environ.get("LATTICEHUB_ARTIFACT_QUOTAS", "").strip()
        if not raw:
            document = self.policy_document()
            return document.artifact_quotas() if document else {}
        deprecated_setting(
            "$LATTICEHUB_ARTIFACT_QUOTAS", "write each group's artifacts cap in the policy document"
        )
        try:
            value = json.loads(raw)
        except ValueError as e:
            raise TraitError(
                f"LATTICEHUB_ARTIFACT_QUOTAS is not JSON ({e}): use e.g. "
                '{"lqcd": "500G", "*": "100G"}'
            ) from None
        try:
            parse_storage_caps(value)  # the message names the bad key or value
        except ValueError as e:
            raise TraitError(f"LATTICEHUB_ARTIFACT_QUOTAS: {e}") from None
        return value

    @validate("artifact_quota")
    def _valid_artifact_quota(self, proposal: Any) -> dict[str, Any]:
        try:
            parse_storage_caps(proposal["value"])
        except ValueError as e:
            raise TraitError(str(e)) from None
        return proposal["value"]

    heartbeat_timeout = Float(
        help="""
        Seconds without a heartbeat after which a RUNNING run is marked LOST, with the
        reason on its timeline. Default: ``$LATTICEHUB_HEARTBEAT_TIMEOUT`` or 180.
        Clients beat every ``LATTICEHUB_HEARTBEAT_S`` (30 s), so keep this several times
        larger, e.g. 180. Runs that never sent a heartbeat (the MLflow client sends none)
        are never marked LOST.
        """,
    ).tag(config=True)

    @default("heartbeat_timeout")
    def _default_heartbeat_timeout(self) -> float:
        return float(os.environ.get("LATTICEHUB_HEARTBEAT_TIMEOUT", "180"))

    heartbeat_check_interval = Float(
        10.0,
        help="Seconds between sweeps for silent runs, e.g. 10 (at most heartbeat_timeout).",
    ).tag(config=True)

    @validate("heartbeat_timeout", "heartbeat_check_interval")
    def _positive_seconds(self, proposal: Any) -> float:
        value = proposal["value"]
        if not value > 0:
            raise TraitError(
                f"{proposal['trait'].name} must be a positive number of seconds, got {value!r}"
            )
        return float(value)

    classes = [JobsConfig, LiveConfig]

    aliases = {
        "db-url": "ExperimentsApp.db_url",
        "artifact-dir": "ExperimentsApp.artifact_dir",
        "ip": "ExperimentsApp.ip",
        "port": "ExperimentsApp.port",
        "heartbeat-timeout": "ExperimentsApp.heartbeat_timeout",
        "log-level": "Application.log_level",
    }

    def start(self) -> None:
        """Open the store and serve until stopped.

        On PostgreSQL the service may run as several replicas (docs/replicas.md): live
        changes travel between them over LISTEN/NOTIFY (:mod:`.replicas`), and one replica
        at a time sweeps heartbeats and polls jobs (advisory locks, :mod:`~..common.dblocks`).
        """
        os.makedirs(self.artifact_dir, exist_ok=True)
        store = open_store(self.db_url)
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/experiments/")
        hub_auth = HubOAuth(cache_max_age=4)  # access.MEMBERSHIP_MAX_AGE_S: groups within 5 s
        lookup = hub_group_lookup(hub_auth.api_url, hub_auth.api_token)
        live = LiveBus(config=LiveConfig(parent=self))
        settings = JobsConfig(parent=self)
        jobs = settings.build(
            store=store,
            hub_auth=hub_auth,
            service_url=f"http://{self.ip}:{self.port}{prefix}".rstrip("/"),
            log=self.log,
            notify=live.notify,
        )
        engine = getattr(store, "engine", None)  # None: a store without a SQL engine
        jobs.poll_lock = AdvisoryLock(engine, JOB_POLL_KEY, "job poll", log=self.log)
        for executor in jobs.executors.values():  # docker, swarm: they start queued jobs
            if hasattr(executor, "admission_lock"):
                executor.admission_lock = AdvisoryLock(
                    engine, JOB_ADMIT_KEY, "job admission", log=self.log
                )
        monitor = HeartbeatMonitor(
            store,
            timeout_s=self.heartbeat_timeout,
            events=jobs.jobs,
            notify=live.notify,
            log=self.log,
            lock=AdvisoryLock(engine, HEARTBEAT_SWEEP_KEY, "heartbeat sweep", log=self.log),
        )
        background = [jobs.run_forever(settings.poll_interval)]
        if engine is not None and engine.dialect.name == "postgresql":
            bridge = ReplicaBridge(live, engine, log=self.log).attach()
            background.append(bridge.run_forever())
            self.log.info("live changes shared with other replicas as %s", bridge.replica_id)
        app = make_app(
            store=store,
            prefix=prefix,
            hub_auth=hub_auth,
            group_lookup=lookup,
            log=self.log,
            blobs=BlobStore(self.artifact_dir, max_size=self.max_artifact_size),
            jobs=jobs,
            live=live,
            max_json_body=self.max_json_body,
            refused_body_drain=self.refused_body_drain,
            refused_body_drain_timeout=self.refused_body_drain_timeout,
            storage_caps=parse_storage_caps(self.artifact_quota),
            cookie_secret=shared_cookie_secret(hub_auth.api_token) if hub_auth.api_token else None,
        )
        # the server-wide limit is the small one; an authorised upload raises its own
        self.listen(app, max_body_size=self.max_json_body)
        self.log.info("experiments service on http://%s:%s%s", self.ip, self.port, prefix)
        interval = min(self.heartbeat_check_interval, self.heartbeat_timeout)
        self.run_forever(*background, monitor.run_forever(interval))


def main() -> None:
    """Console entry point."""
    ExperimentsApp.launch_instance()
