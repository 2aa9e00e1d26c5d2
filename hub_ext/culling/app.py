"""The ``culler`` service: rounds of ``jupyterhub_idle_culler.cull_idle``, judged per group.

Run by JupyterHub as a managed service (``python -m hub_ext.culling``); settings come from
traitlets (command-line aliases) and the service environment that
:func:`hub_ext.culling.hubconfig.install` declares.

Each round:

1. list the active users with their groups and servers (``GET /users?state=active``) and
   charge each server to its group, as the spawner does;
2. read each culled group's properties (a manager may have lowered ``max_servers``) and
   make the round's plan (:func:`hub_ext.culling.plan.plan_round`): per group, the idle
   timeout (the shorter ``idle_timeout_busy`` when the group is busy) and ``max_age``;
3. call the idle culler's ``cull_idle`` once, with a ``cull_arbiter`` that judges each
   server by its group's rule; servers of other groups are kept. The culler itself lists
   the ready servers, skips pending ones, stops the others and waits on slow stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from jupyterhub_idle_culler import cull_idle, parse_date, utcnow
from traitlets import Bool, Float, Int, TraitError, Unicode, default, validate

from hub_ext.common.hub_client import HubError, HubSource
from hub_ext.common.policyfile import PolicyFileConfig
from hub_ext.common.service import HubManagedApp
from latticehub.limits import GroupLimits, apply_properties
from latticehub.policy import Policy

from .plan import (
    DEFAULT_BUSY_FRACTION,
    GroupRule,
    ServerRef,
    charged_servers,
    count_by_group,
    cull_reason,
    has_idle_settings,
    plan_round,
)

#: ``cull(url, api_token, inactive_limit, logger, **options)``: the idle culler's round (the
#: seam for tests).
Cull = Callable[..., Awaitable[None]]


async def effective_limits(
    hub: HubSource, policy: Policy, pools: list[str], *, log: logging.Logger
) -> dict[str, GroupLimits]:
    """Each pool's limits with idle settings, ``max_servers`` lowered by group properties.

    A group whose model cannot be read keeps its ceiling (logged).
    """
    limits: dict[str, GroupLimits] = {}
    for pool in pools:
        ceiling = policy.ceiling_of(pool)
        if ceiling is None or not has_idle_settings(ceiling):
            continue
        if pool == policy.no_group_pool and pool not in policy.ceilings:
            limits[pool] = ceiling
            continue
        try:
            model = await hub.group(pool)
        except HubError as e:
            log.warning("group %r: cannot read its properties (%s); using the ceiling", pool, e)
            model = None
        effective, _ = apply_properties(ceiling, (model or {}).get("properties"))
        limits[pool] = effective
    return limits


def make_arbiter(
    rules: Mapping[str, GroupRule],
    servers: list[ServerRef],
    *,
    log: logging.Logger,
    now: Callable[[], Any] = utcnow,
) -> Callable[..., bool]:
    """A ``cull_arbiter`` for ``cull_idle`` that applies each server's group rule.

    Servers are matched by their URL path (``/user/<name>/<server>/``, unique in a Hub);
    a server not charged to a group in ``rules`` (another group, or one started after the
    round's listing) is kept.
    """
    by_url = {s.url: s for s in servers if s.group in rules}

    def arbiter(*, inactive: Any, inactive_limit: int, server: Mapping[str, Any], **_: Any) -> bool:
        ref = by_url.get(str(server.get("url")))
        if ref is None:
            return False
        started = server.get("started")
        age_s = (now() - parse_date(started)).total_seconds() if started else None
        inactive_s = inactive.total_seconds() if inactive is not None else None
        reason = cull_reason(rules[ref.group], inactive_s=inactive_s, age_s=age_s)
        name = f"{ref.user}/{ref.server}"
        if reason is None:
            log.debug("keeping %s of group %r", name, ref.group)
            return False
        log.info("culling %s of group %r: %s", name, ref.group, reason)
        return True

    return arbiter


async def cull_round(
    *,
    hub: HubSource,
    policy: Policy,
    api_token: str,
    busy_fraction: float = DEFAULT_BUSY_FRACTION,
    concurrency: int = 10,
    remove_named_servers: bool = False,
    log: logging.Logger,
    cull: Cull = cull_idle,
) -> dict[str, GroupRule]:
    """One round: plan per group, then let the idle culler stop what the plan says.

    Args:
        hub: the Hub API with the service's token.
        policy: the spawner's limit settings.
        api_token: the service's token (the idle culler makes its own requests).
        busy_fraction: share of ``max_servers`` from which a group is busy.
        concurrency: the idle culler's limit of concurrent Hub requests.
        remove_named_servers: delete named servers instead of only stopping them.
        log: the logger (the idle culler logs there too).
        cull: the idle culler's round (default ``jupyterhub_idle_culler.cull_idle``).

    Returns:
        The round's rules (group -> rule).

    Raises:
        HubError: when the Hub cannot be read.
    """
    users = await hub.active_users()
    servers = charged_servers(policy, users)
    running = count_by_group(servers)
    pools = list(dict.fromkeys([*policy.ceilings, *running]))
    limits = await effective_limits(hub, policy, pools, log=log)
    rules = plan_round(limits, running, busy_fraction=busy_fraction)
    for rule in rules.values():
        log.debug("plan %s", rule.describe())
    if not any(rule.group in running for rule in rules.values()):
        return rules
    timeouts = [r.timeout for r in rules.values() if r.timeout is not None]
    await cull(
        hub.api_url,
        api_token,
        min(timeouts, default=0),
        log,
        max_age=0,  # the arbiter applies each group's max_age
        concurrency=concurrency,
        remove_named_servers=remove_named_servers,
        cull_users=False,
        cull_arbiter=make_arbiter(rules, servers, log=log),
    )
    return rules


class CullerApp(HubManagedApp, PolicyFileConfig):
    """Stop idle servers with per-group timeouts (``python -m hub_ext.culling --help``)."""

    policy_env = "LATTICEHUB_CULLING_POLICY"
    name = "latticehub-culler"
    description = (
        "Per-group idle culling for latticehub (a JupyterHub service): runs "
        "jupyterhub-idle-culler with each group's idle_timeout, idle_timeout_busy and max_age."
    )

    @default("log_level")
    def _default_log_level(self) -> int:
        # INFO: each culled server is logged with its group and the reason
        return logging.INFO

    @default("log_format")
    def _default_log_format(self) -> str:
        # the Hub's shape, so that the service's lines read well in the Hub's log
        return "[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s] %(message)s"

    @default("log_datefmt")
    def _default_log_datefmt(self) -> str:
        return "%Y-%m-%d %H:%M:%S"

    api_url = Unicode(
        help="""
        The Hub API, e.g. ``http://127.0.0.1:8081/hub/api``. Default:
        ``$JUPYTERHUB_API_URL`` (set by the Hub for its managed services).
        """,
    ).tag(config=True)

    @default("api_url")
    def _default_api_url(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")

    api_token = Unicode(
        help="""
        The service's Hub API token; its role needs the scopes of docs/culling.md. Default:
        ``$JUPYTERHUB_API_TOKEN`` (set by the Hub for its managed services).
        """,
    ).tag(config=True)

    @default("api_token")
    def _default_api_token(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    interval = Float(
        help="""
        Seconds between two rounds, e.g. 60 (the default). A server is stopped at most one
        interval after its group's timeout has passed. Default:
        ``$LATTICEHUB_CULL_INTERVAL`` when set.
        """,
    ).tag(config=True)

    @default("interval")
    def _default_interval(self) -> float:
        return float(os.environ.get("LATTICEHUB_CULL_INTERVAL") or 60.0)

    @validate("interval")
    def _validate_interval(self, proposal: Any) -> float:
        if not proposal.value > 0:
            raise TraitError(f"interval={proposal.value!r} must be > 0 seconds, e.g. 60")
        return float(proposal.value)

    busy_fraction = Float(
        help="""
        A group is busy while it holds at least this share of its ``max_servers`` (as
        lowered by a manager): its servers are then judged by ``idle_timeout_busy``
        instead of ``idle_timeout``. In (0, 1]; 0.8 (the default) means 4 of 5 servers,
        1.0 means only a full group. Default: ``$LATTICEHUB_CULL_BUSY_FRACTION`` when set.
        """,
    ).tag(config=True)

    @default("busy_fraction")
    def _default_busy_fraction(self) -> float:
        return float(os.environ.get("LATTICEHUB_CULL_BUSY_FRACTION") or DEFAULT_BUSY_FRACTION)

    @validate("busy_fraction")
    def _validate_busy_fraction(self, proposal: Any) -> float:
        if not 0 < proposal.value <= 1:
            raise TraitError(
                f"busy_fraction={proposal.value!r} must be in (0, 1], e.g. 0.8 (busy from "
                "80% of max_servers)"
            )
        return float(proposal.value)

    concurrency = Int(
        10,
        help="""
        Hub API requests the idle culler makes at once at most, e.g. 10 (the default);
        stopping many servers at the same time slows the Hub down.
        """,
    ).tag(config=True)

    @validate("concurrency")
    def _validate_concurrency(self, proposal: Any) -> int:
        if proposal.value < 1:
            raise TraitError(f"concurrency={proposal.value!r} must be >= 1, e.g. 10")
        return proposal.value

    remove_named_servers = Bool(
        False,
        help="""
        Delete culled named servers (``DELETE .../servers/<name>`` with ``remove``) instead
        of only stopping them; the default keeps them, so that users can start them again.
        """,
    ).tag(config=True)

    hub_pid = Int(
        0,
        help="""
        The parent process (the Hub) that ``exit_with_hub`` compares against; 0 (the
        default) means the parent when ``run`` begins. ``python -m hub_ext.culling`` reads
        its parent before anything else, so a Hub killed during start-up is still noticed.
        Set by the entry point, not by configuration.
        """,
    )

    @validate("hub_pid")
    def _valid_hub_pid(self, proposal: Any) -> int:
        if proposal.value < 0:
            raise TraitError(
                f"hub_pid must be a process id or 0 (the parent), not {proposal.value}"
            )
        return proposal.value

    once = Bool(
        False,
        help="Run one round and exit (for cron jobs and checks); the default runs forever.",
    ).tag(config=True)

    aliases = {
        "policy": "CullerApp.policy",
        "policy-file": "CullerApp.policy_file",
        "api-url": "CullerApp.api_url",
        "interval": "CullerApp.interval",
        "busy-fraction": "CullerApp.busy_fraction",
        "concurrency": "CullerApp.concurrency",
        "log-level": "Application.log_level",
    }
    flags = {
        "once": ({"CullerApp": {"once": True}}, "Run one round and exit."),
        "remove-named-servers": (
            {"CullerApp": {"remove_named_servers": True}},
            "Delete culled named servers instead of stopping them.",
        ),
    }

    async def run_round(self, hub: HubSource, policy: Policy) -> None:
        """One round; errors of the Hub API are logged and the next round tries again."""
        try:
            rules = await cull_round(
                hub=hub,
                policy=policy,
                api_token=self.api_token,
                busy_fraction=self.busy_fraction,
                concurrency=self.concurrency,
                remove_named_servers=self.remove_named_servers,
                log=self.log,
            )
        except HubError as e:
            self.log.warning("round skipped: %s", e.message)
            return
        except Exception:  # the culler's own requests raise tornado's errors
            self.log.exception("round failed")
            return
        self.log.debug("round done: %s", "; ".join(r.describe() for r in rules.values()))

    async def run(self) -> None:
        """Run rounds every ``interval`` seconds (one with ``--once``)."""
        policy = self.service_policy()
        hub = HubSource(self.api_url, self.api_token)
        groups = [g for g, limits in policy.ceilings.items() if has_idle_settings(limits)]
        self.log.info(
            "culler: every %ss, busy from %.0f%% of max_servers; groups with idle settings: %s",
            self.interval,
            self.busy_fraction * 100,
            ", ".join(groups) or "none listed",
        )
        parent = self.hub_pid or os.getppid()
        while True:
            await self.run_round(hub, policy)
            if self.once:
                return
            # sleep in short steps, so that a vanished Hub is noticed within a second
            deadline = asyncio.get_running_loop().time() + self.interval
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                await asyncio.sleep(min(left, 1.0))
                if self.exit_with_hub and os.getppid() != parent:
                    self.log.warning("the Hub (pid %s) is gone; stopping", parent)
                    return

    def start(self) -> None:
        """Run until stopped (or one round with ``--once``).

        The Hub stops its managed services with SIGINT: that ends the process quietly.
        """
        try:
            asyncio.run(self.run())
        except KeyboardInterrupt:
            self.log.info("interrupted; stopping")


def main(hub_pid: int = 0) -> None:
    """Console entry point.

    Args:
        hub_pid: the Hub's process id as read first thing at start-up (0: the parent now).
    """
    CullerApp.launch_instance(hub_pid=hub_pid)
