"""The ``quotas`` service: a small tornado app behind Hub OAuth and Hub tokens.

Run by JupyterHub as a managed service (``python -m hub_ext.quotas``); settings come from
traitlets (command-line aliases) and the service environment that
:func:`hub_ext.quotas.hubconfig.install` declares.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from jupyterhub.services.auth import HubOAuth
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Float, TraitError, Unicode, default, validate

from latticehub.policy import Policy

from ..common.hub_client import HubError, HubSource
from ..common.policyfile import PolicyFileConfig
from ..common.service import OAuthCallbackHandler, WebServiceApp
from .accounting.recorder import UsageRecorder
from .accounting.store import SqlUsageStore, UsageStore
from .docker_source import EngineSource, engine_source
from .handlers import default_handlers
from .jobs_source import ExperimentsJobSource, JobSource
from .storage_source import ExperimentsStorageSource, StorageSource

TEMPLATE_DIR = str(Path(__file__).parent / "templates")


def make_app(
    *,
    policy: Policy,
    hub: HubSource,
    engine: EngineSource,
    hub_auth: Any,
    prefix: str,
    log: Any,
    usage_store: UsageStore | None = None,
    recorder: UsageRecorder | None = None,
    job_source: JobSource | None = None,
    storage_source: StorageSource | None = None,
) -> web.Application:
    """The tornado application with every handler under ``prefix``.

    Args:
        policy: the admin's ceilings and the spawner's settings.
        hub: the Hub API with the service's token.
        engine: the container engine's objects and nodes.
        hub_auth: a ``HubOAuth`` (or test double) that identifies callers.
        prefix: the service's URL prefix, e.g. ``/services/quotas/``.
        log: the logger.
        usage_store: recorded server sessions (default: an in-memory SQLite store).
        recorder: brings ``usage_store`` up to date before each usage request.
        job_source: the groups' batch jobs (``None``: the pages show no jobs).
        storage_source: the groups' artifact storage (``None``: the pages show none).
    """
    if usage_store is None:
        usage_store = SqlUsageStore("sqlite://")
    handlers: list = [(url_path_join(prefix, path), h) for path, h in default_handlers]
    handlers.append((url_path_join(prefix, "oauth_callback"), OAuthCallbackHandler))
    return web.Application(
        handlers,
        policy=policy,
        hub=hub,
        engine=engine,
        hub_auth=hub_auth,
        log=log,
        usage_store=usage_store,
        recorder=recorder,
        job_source=job_source,
        storage_source=storage_source,
        service_prefix=prefix,
        template_path=TEMPLATE_DIR,
        cookie_secret=os.urandom(32),
        # HubOAuth checks the XSRF token of every cookie-authenticated request that changes
        # state (token-authenticated API calls need none); the form carries it as ``_xsrf``
        xsrf_cookies=False,
    )


def missing_write_scopes(policy: Policy, scopes: list[str]) -> list[str]:
    """Write scopes (``groups!group=<g>``, or ``groups``) the service's token lacks."""
    held = set(scopes)
    if held & {"groups", "admin:groups"}:
        return []
    if policy.unlisted is not None:
        return ["groups"]
    return [f"groups!group={g}" for g in policy.ceilings if f"groups!group={g}" not in held]


class QuotasApp(WebServiceApp, PolicyFileConfig):
    """Serve the quotas pages and API (``python -m hub_ext.quotas --help``)."""

    default_port = 10102

    policy_env = "LATTICEHUB_QUOTAS_POLICY"
    name = "latticehub-quotas"
    description = "Per-group usage and limits for latticehub (a JupyterHub service)."

    @default("log_level")
    def _default_log_level(self) -> int:
        # INFO: each lowering is logged with who did it (the audit trail)
        return logging.INFO

    cache_max_age = Float(
        30.0,
        help="Seconds HubOAuth caches a token's user model (and so its scopes), e.g. 30.",
    ).tag(config=True)

    usage_db = Unicode(
        help="""
        Database URL of the usage record (server sessions), e.g.
        ``sqlite:////var/lib/latticehub/usage.sqlite`` (the default: ``usage.sqlite`` in
        ``$LATTICEHUB_STATE``, else in the working directory) or
        ``postgresql://user:password@host/db``. Default: ``$LATTICEHUB_USAGE_DB`` when set.
        """,
    ).tag(config=True)

    @default("usage_db")
    def _default_usage_db(self) -> str:
        if os.environ.get("LATTICEHUB_USAGE_DB"):
            return os.environ["LATTICEHUB_USAGE_DB"]
        state = os.environ.get("LATTICEHUB_STATE") or os.getcwd()
        return f"sqlite:///{os.path.join(os.path.abspath(state), 'usage.sqlite')}"

    @validate("usage_db")
    def _validate_usage_db(self, proposal: Any) -> str:
        value = proposal["value"]
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+")):
            raise TraitError(
                f"usage_db={value!r}: use sqlite:////absolute/path.sqlite or "
                "postgresql://user:password@host/database"
            )
        return value

    experiments_api = Unicode(
        help="""
        Base URL of the experiments service's API, e.g.
        ``http://127.0.0.1:10101/services/experiments``, from which the pages read each
        group's queued and running batch jobs and its artifact storage against the cap (with
        this service's Hub token, which needs ``access:services!service=experiments`` and
        ``custom:latticehub-usage:read``; ``hubconfig.install`` grants both when it passes
        this URL). Empty: neither is shown. Default: ``$LATTICEHUB_EXPERIMENTS_API``.
        """,
    ).tag(config=True)

    @default("experiments_api")
    def _default_experiments_api(self) -> str:
        return os.environ.get("LATTICEHUB_EXPERIMENTS_API", "")

    @validate("experiments_api")
    def _validate_experiments_api(self, proposal: Any) -> str:
        value = proposal["value"]
        if value and not value.startswith(("http://", "https://")):
            raise TraitError(
                f"experiments_api={value!r}: use the experiments service's URL, e.g. "
                "http://127.0.0.1:10101/services/experiments, or '' to show no jobs or storage"
            )
        return value

    usage_interval = Float(
        15.0,
        help="""
        Seconds between two readings of the engine for usage accounting, e.g. 15. Start and
        stop times come from the engine's events and are exact; a stop the engine no longer
        remembers (the service was down longer than its event log reaches) is dated by the
        first reading that finds the server gone. Default: ``$LATTICEHUB_USAGE_INTERVAL``.
        """,
    ).tag(config=True)

    @default("usage_interval")
    def _default_usage_interval(self) -> float:
        return float(os.environ.get("LATTICEHUB_USAGE_INTERVAL") or 15.0)

    @validate("usage_interval")
    def _positive_interval(self, proposal: Any) -> float:
        if not proposal["value"] > 0:
            raise TraitError("usage_interval must be > 0 seconds, e.g. 15")
        return float(proposal["value"])

    @validate("cache_max_age")
    def _non_negative(self, proposal: Any) -> float:
        if proposal["value"] < 0:
            raise TraitError(f"{proposal['trait'].name} must be >= 0 seconds")
        return float(proposal["value"])

    aliases = {
        "ip": "QuotasApp.ip",
        "port": "QuotasApp.port",
        "policy": "QuotasApp.policy",
        "policy-file": "QuotasApp.policy_file",
        "usage-db": "QuotasApp.usage_db",
        "log-level": "Application.log_level",
    }

    def serve(self, app: web.Application) -> HTTPServer:
        """Listen on ``ip:port`` with every request body limited to the handlers' limit.

        The service takes small JSON and form bodies only: a larger one gets 413 with a JSON
        error before it is read (:mod:`hub_ext.bodylimits`), and the server's
        ``max_body_size`` is the same limit.
        """
        from ..bodylimits import BodyLimited
        from .handlers.base import MAX_JSON_BODY

        limited = BodyLimited(
            app,
            limit=MAX_JSON_BODY,
            hint=": the quotas service takes small JSON and form bodies only",
        )
        return self.listen(limited, max_body_size=MAX_JSON_BODY)

    async def check_role(self, hub: HubSource, policy: Policy) -> None:
        """Warn at start when the service's role cannot write some groups' properties."""
        try:
            model = await hub.whoami()
        except HubError as e:
            self.log.warning("could not read the service's own scopes: %s", e.message)
            return
        missing = missing_write_scopes(policy, list(model.get("scopes") or []))
        if not missing:
            self.log.info("the service's role may lower every group with a share")
        else:
            self.log.warning(
                "the quotas service's role lacks %s: managers cannot lower those groups "
                "(add the scopes to the role %r in jupyterhub_config.py)",
                ", ".join(missing),
                "quotas-service",
            )

    def start(self) -> None:
        """Serve until stopped."""
        policy = self.service_policy()
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/quotas/")
        hub_auth = HubOAuth(cache_max_age=self.cache_max_age)
        hub = HubSource(hub_auth.api_url, hub_auth.api_token)
        engine = engine_source(policy.engine, policy.hub_id, node_name=policy.node_name)
        usage_store = SqlUsageStore(self.usage_db)
        recorder = UsageRecorder(usage_store, engine, log=self.log)
        app = make_app(
            policy=policy,
            hub=hub,
            engine=engine,
            hub_auth=hub_auth,
            prefix=prefix,
            log=self.log,
            usage_store=usage_store,
            recorder=recorder,
            job_source=ExperimentsJobSource(self.experiments_api, hub_auth.api_token)
            if self.experiments_api
            else None,
            storage_source=ExperimentsStorageSource(self.experiments_api, hub_auth.api_token)
            if self.experiments_api
            else None,
        )
        self.serve(app)
        self.log.info(
            "quotas service on http://%s:%s%s (%s groups, %s engine, hub id %s)",
            self.ip,
            self.port,
            prefix,
            len(policy.ceilings),
            policy.engine,
            policy.hub_id,
        )
        self.run_forever(self.check_role(hub, policy), recorder.run(self.usage_interval))


def main() -> None:
    """Console entry point."""
    QuotasApp.launch_instance()
