"""Group limits for Docker-based spawners: traits, the start-time policy and the ledger.

:class:`GroupLimitsMixin` holds what the Docker and the Swarm spawner share. Each
concrete spawner supplies how to list its objects in the engine and how to create one.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from jupyterhub.spawner import SpawnException
from traitlets import Any as AnyTrait
from traitlets import Dict, Float, Unicode, default, validate
from traitlets.config import Configurable
from traitlets.traitlets import TraitError

from . import metrics
from .form import GroupOffer, options_from_form, render_options_form
from .ledger import RUNNING, Slot, SlotLedger
from .limits import (
    GroupLimits,
    LimitError,
    ServerRequest,
    apply_properties,
    chargeable_groups,
    choose_group,
    parse_all_group_limits,
    parse_group_limits,
    permitted_images,
    resolve_request,
)
from .naming import safe_name
from .units import parse_bytes


class GroupLimitsMixin(Configurable):
    """Per-group limits shared by :class:`GroupLimitDockerSpawner` and the Swarm variant."""

    # one ledger per hub id in this process: spawner objects are per server, the ledger
    # must see all of them (as DockerSpawner shares its client and executor)
    _ledgers: ClassVar[dict[str, SlotLedger]] = {}

    group_limits = Dict(
        help="""
        Admin-only ceilings per JupyterHub group: group name -> limits.

        Keys of each group's dict (all optional):

        - ``max_servers`` (int): servers the group may run at once.
        - ``max_servers_per_user`` (int): servers one user may run charged to the group.
        - ``mem_limit`` (bytes or str such as ``"8G"``): memory ceiling per server.
        - ``cpu_limit`` (float cores, or ``"500m"``): CPU ceiling per server.
        - ``gpus`` (int): GPUs one server may ask for (unset: 0).
        - ``gpu_sharing`` (bool): servers of the group may share GPUs.
        - ``images`` (list of str): images the group may run.
        - ``nodes`` (list of str): nodes the group's servers may run on (Swarm).
        - ``constraints`` (list of str): extra Swarm placement constraints.
        - ``home`` (str): volume name or absolute host path template for homes.
        - ``shared_dir`` (str): volume name or host path of the group's shared directory.
        - ``shared_readonly`` (bool): mount the shared directory read-only.
        - ``run_as_user`` (bool): run as the user's own uid/gid (host passwd).

        Templates may use ``{username}`` and ``{group}``. Group managers may *lower*
        values through the group's properties (key ``latticehub``), never raise them.
        The order of the groups is the order in which a user's default group is chosen.

        Example::

            c.GroupLimitDockerSpawner.group_limits = {
                "lqcd": {"max_servers": 3, "max_servers_per_user": 1,
                         "mem_limit": "8G", "cpu_limit": 2.0, "gpus": 1},
                "nuclear": {"max_servers": 2},
            }
        """,
    ).tag(config=True)

    @validate("group_limits")
    def _validate_group_limits(self, proposal: Any) -> dict:
        try:
            parse_all_group_limits(proposal.value)
        except ValueError as e:
            raise TraitError(f"{e}. See the group_limits help for the accepted keys.") from e
        return proposal.value

    unlisted_group_limits = Dict(
        None,
        allow_none=True,
        help="""
        Limits for each JupyterHub group that is not in ``group_limits``.

        ``None`` (default): such groups cannot be charged. A dict (same keys as in
        ``group_limits``) gives every unlisted group its own pool with these limits,
        e.g. ``{"max_servers": 1}``.
        """,
    ).tag(config=True)

    no_group_limits = Dict(
        None,
        allow_none=True,
        help="""
        Limits for users who are in no chargeable group, who share one pool named by
        ``no_group_pool``.

        ``None`` (default): such users are refused (HTTP 403) with a message that tells
        them to ask for a group. A dict, e.g. ``{"max_servers": 2, "mem_limit": "2G"}``,
        lets them in with these limits.
        """,
    ).tag(config=True)

    @validate("unlisted_group_limits", "no_group_limits")
    def _validate_optional_limits(self, proposal: Any) -> dict | None:
        if proposal.value is None:
            return None
        try:
            parse_group_limits(proposal.value, where=proposal.trait.name)
        except ValueError as e:
            raise TraitError(str(e)) from e
        return proposal.value

    no_group_pool = Unicode(
        "no-group",
        help="Pool name (in labels, metrics and messages) of users in no chargeable group.",
    ).tag(config=True)

    hub_id = Unicode(
        help="""
        Identifies this hub in container labels, so that the ledger is rebuilt only from
        this hub's containers. Default: ``$LATTICEHUB_HUB_ID`` or ``latticehub``.
        Give each hub sharing one Docker engine its own id, e.g. ``"prod"``.
        """,
    ).tag(config=True)

    @default("hub_id")
    def _default_hub_id(self) -> str:
        return os.environ.get("LATTICEHUB_HUB_ID", "latticehub")

    @validate("hub_id")
    def _validate_hub_id(self, proposal: Any) -> str:
        if not proposal.value or safe_name(proposal.value) != proposal.value:
            raise TraitError(
                f"hub_id={proposal.value!r}: use letters, digits, '.', '_' or '-', e.g. 'prod'"
            )
        return proposal.value

    gpu_devices = Dict(
        help="""
        GPU device ids per node, from which servers get specific GPUs:
        node name -> list of ids, e.g. ``{"local": ["0", "1"]}`` for the local engine
        (node ``node_name``) or ``{"gpu01": ["0", "1", "2", "3"]}`` per Swarm node.
        Assignments are stored in labels and survive Hub restarts. Empty: no GPUs.
        """,
    ).tag(config=True)

    @validate("gpu_devices")
    def _validate_gpu_devices(self, proposal: Any) -> dict:
        for node, ids in proposal.value.items():
            if isinstance(ids, str) or not all(isinstance(i, str | int) for i in ids):
                raise TraitError(
                    f"gpu_devices[{node!r}]={ids!r}: give a list of device ids, e.g. ['0', '1']"
                )
        return {node: [str(i) for i in ids] for node, ids in proposal.value.items()}

    spawn_queue_timeout = Float(
        0.0,
        help="""
        Seconds a spawn waits for a free slot of its group instead of failing at once
        with HTTP 429 (0, the default: no waiting). Waiting spawns are served first come,
        first served and see their position in the spawn progress, e.g. ``120``.
        Keep it below ``start_timeout``.
        """,
    ).tag(config=True)

    @validate("spawn_queue_timeout")
    def _validate_queue_timeout(self, proposal: Any) -> float:
        if proposal.value < 0:
            raise TraitError("spawn_queue_timeout must be >= 0 seconds (0 disables the queue)")
        return proposal.value

    home_volume = Unicode(
        "latticehub-home-{username}",
        help="""
        Persistent home of each user, mounted at ``home_mount_point``: a Docker volume
        name template, or an absolute host path template on the shared filesystem, e.g.
        ``/gpfs/home/{username}``. A group's ``home`` limit overrides it. Empty: no home.
        """,
    ).tag(config=True)

    home_mount_point = Unicode(
        "/home/jovyan", help="Where the home is mounted inside the container."
    ).tag(config=True)

    shared_mount_point = Unicode(
        "/srv/group",
        help="""
        Where the group's ``shared_dir`` is mounted inside the container. The image
        creates it owned by the notebook user so that a new Docker volume is writable.
        """,
    ).tag(config=True)

    orphan_report_delay = Float(
        60.0,
        help="""
        Seconds after the ledger is rebuilt at Hub start before containers that no Hub
        server owns are reported as orphans (log warning and metric). They still count
        against their group's limits until removed.
        """,
    ).tag(config=True)

    clock = AnyTrait(help="Seam for tests: a monotonic clock, default time.monotonic.")

    @default("clock")
    def _default_clock(self) -> Any:
        return time.monotonic

    @default("options_form")
    def _default_options_form(self) -> Any:
        return type(self)._render_options_form

    @default("options_from_form")
    def _default_options_from_form(self) -> Any:
        return options_from_form

    # -- per-start state (reset on every start) ----------------------------------------
    _slot: Slot | None = None
    _request: ServerRequest | None = None
    _events: list[dict]
    _start_done: bool = True

    @property
    def ledger(self) -> SlotLedger:
        """This hub's ledger (shared by all spawners of the process)."""
        ledger = self._ledgers.get(self.hub_id)
        if ledger is None:
            ledger = self._ledgers[self.hub_id] = SlotLedger()
        return ledger

    # -- hooks for the concrete spawners ---------------------------------------
    async def engine_slots(self) -> list[Slot]:
        """Slots of this hub's objects that run in the engine (from their labels)."""
        raise NotImplementedError

    async def launch(self, slot: Slot, request: ServerRequest, limits: GroupLimits) -> Any:
        """Create and start the object for ``slot``; return ``(ip, port)`` or a URL."""
        raise NotImplementedError

    # -- progress ---------------------------------------------------------------
    def emit(self, message: str, progress: int | None = None) -> None:
        """Add a spawn progress event (shown on the spawn page)."""
        event: dict[str, Any] = {"message": message}
        if progress is not None:
            event["progress"] = progress
        self._events.append(event)
        self.log.debug("%s: %s", self._log_name, message)

    async def progress(self):  # noqa: D102 - documented by Spawner.progress
        seen = 0
        while True:
            events = getattr(self, "_events", [])
            while seen < len(events):
                yield events[seen]
                seen += 1
            if self._start_done:
                return
            await asyncio.sleep(0.2)

    # -- the policy, decided on every start ---------------------------------------
    def _groups(self) -> dict[str, Mapping[str, Any]]:
        return {g.name: (g.properties or {}) for g in self.user.groups}

    def resolve(self, options: Mapping[str, Any]) -> tuple[str, GroupLimits, ServerRequest]:
        """Decide the pool, its effective limits and the request for this start.

        Raises:
            LimitError: for a group, image or resource request that is not allowed.
        """
        ceilings = parse_all_group_limits(self.group_limits)
        unlisted = (
            parse_group_limits(self.unlisted_group_limits)
            if self.unlisted_group_limits is not None
            else None
        )
        nogroup = (
            parse_group_limits(self.no_group_limits) if self.no_group_limits is not None else None
        )
        groups = self._groups()
        requested = options.get("group")
        if requested is not None and not isinstance(requested, str):
            raise LimitError(400, "bad_option", f"group={requested!r} must be a group name")
        choice = choose_group(
            user=self.user.name,
            user_groups=list(groups),
            requested=requested,
            group_limits=ceilings,
            unlisted_limits=unlisted,
            no_group_limits=nogroup,
            no_group_pool=self.no_group_pool,
        )
        limits, warnings = apply_properties(choice.limits, groups.get(choice.pool))
        for warning in warnings:
            self.log.warning("group %s properties: %s", choice.pool, warning)
        allowed = self._allowed_image_list()
        request = resolve_request(
            group=choice.pool,
            limits=limits,
            options=options,
            default_image=self.image,
            allowed_images=allowed,
            default_mem=parse_bytes(self.mem_limit) if self.mem_limit else None,
            default_cpu=self.cpu_limit,
        )
        return choice.pool, limits, request

    def _allowed_image_list(self) -> list[str] | None:
        allowed = self._get_allowed_images()
        if allowed == "*" or not allowed:
            return None
        return list(allowed)

    def _refuse(self, pool: str, error: LimitError) -> SpawnException:
        metrics.REJECTIONS.labels(group=pool, reason=error.reason).inc()
        self.log.warning("Refused spawn of %s (%s): %s", self._log_name, pool, error.message)
        return SpawnException(error.message, reason=error.reason, status_code=error.status_code)

    async def ensure_ledger(self) -> SlotLedger:
        """Load the ledger from the engine once per process (at the first start/poll)."""
        ledger = self.ledger
        if ledger.loaded:
            return ledger
        async with ledger.load_lock:
            if not ledger.loaded:
                slots = await self.engine_slots()
                ledger.adopt(slots)
                self.log.info(
                    "Rebuilt the group ledger from the engine: %s",
                    ", ".join(f"{p}={len(ledger.slots(p))}" for p in sorted(ledger.pools()))
                    or "no servers",
                )
                self._update_metrics()
                asyncio.ensure_future(self._report_orphans_later())
        return ledger

    async def _report_orphans_later(self) -> None:
        await asyncio.sleep(self.orphan_report_delay)
        orphans = self.ledger.orphans()
        metrics.ORPHANS.set(len(orphans))
        for slot in orphans:
            self.log.warning(
                "Orphaned server %s (group %s, object %s) runs in the engine but no Hub "
                "server owns it; it counts against the group until removed",
                slot.holder,
                slot.pool,
                slot.object_id[:12],
            )

    async def reconcile(self) -> None:
        """Free slots whose container or service stopped running behind our back."""
        running = {s.object_id for s in await self.engine_slots()}
        for slot in self.ledger.reconcile(running):
            self.log.info("Freed the slot of %s: its server no longer runs", slot.holder)
        self._update_metrics()

    async def acquire_slot(self, pool: str, limits: GroupLimits, request: ServerRequest) -> Slot:
        """Reserve a slot: at once, after a reconcile, or after waiting in the queue."""
        ledger = self.ledger

        def attempt(ticket: int | None = None) -> Slot:
            return ledger.reserve(
                pool=pool,
                user=self.user.name,
                server=self.name,
                limits=limits,
                request=request,
                gpu_inventory=self.gpu_devices,
                nodes=self.placement_nodes(limits),
                ticket=ticket,
            )

        waitable = {"group_full", "gpus_full", "queued"}
        try:
            return attempt()
        except LimitError as e:
            if e.status_code != 429:
                raise
        await self.reconcile()
        try:
            return attempt()
        except LimitError as e:
            if e.reason not in waitable or self.spawn_queue_timeout <= 0:
                raise
            last = e
        ticket = ledger.enqueue(pool)
        deadline = self.clock() + self.spawn_queue_timeout
        self._update_metrics()
        try:
            while True:
                position = ledger.position(pool, ticket)
                if position == 0:
                    try:
                        return attempt(ticket)
                    except LimitError as e:
                        if e.reason not in waitable:
                            raise
                        last = e
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise LimitError(
                        429,
                        "queue_timeout",
                        f"{last.message} Waited {self.spawn_queue_timeout:g}s in the queue.",
                    )
                self.emit(
                    f"Waiting for a slot of group {pool}: position {position + 1} of "
                    f"{ledger.queued(pool)} in the queue ({remaining:.0f}s left)"
                )
                await ledger.wait_for_change(pool, min(remaining, 5.0))
                await self.reconcile()
        finally:
            ledger.dequeue(pool, ticket)
            self._update_metrics()

    def placement_nodes(self, limits: GroupLimits) -> list[str] | None:
        """Nodes a server of the group may use (``None``: any)."""
        return list(limits.nodes) if limits.nodes is not None else None

    def _update_metrics(self, pool: str | None = None, limits: GroupLimits | None = None) -> None:
        ledger = self.ledger
        pools = ledger.pools() | set(parse_all_group_limits(self.group_limits))
        for name in pools:
            metrics.GROUP_SERVERS.labels(group=name).set(len(ledger.slots(name)))
            metrics.GROUP_QUEUED.labels(group=name).set(ledger.queued(name))
        if pool is not None and limits is not None:
            cap = limits.max_servers
            metrics.GROUP_SERVER_LIMIT.labels(group=pool).set(-1 if cap is None else cap)

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> Any:
        """Check the group's limits, reserve a slot, then create and start the server."""
        self._events = []
        self._start_done = False
        self._slot = None
        self._request = None
        pool = "?"
        try:
            self.emit("Checking the group's limits", 5)
            await self.ensure_ledger()
            try:
                pool, limits, request = self.resolve(self.user_options or {})
                self._update_metrics(pool, limits)
                slot = await self.acquire_slot(pool, limits, request)
            except LimitError as e:
                raise self._refuse(pool, e) from None
            self._slot = slot
            self._update_metrics(pool, limits)
            self.emit(
                f"Reserved a slot of group {pool} ({len(self.ledger.slots(pool))}/"
                f"{limits.max_servers if limits.max_servers is not None else 'unlimited'})",
                20,
            )
            self._request = request
            try:
                result = await self.launch(slot, request, limits)
            except BaseException:
                self.ledger.release(slot.user, slot.server, slot.token)
                self._slot = None
                self._update_metrics()
                raise
            self._slot = self.ledger.update(slot, state=RUNNING, object_id=self.object_id) or slot
            self.emit("Waiting for the notebook server to answer", 80)
            return result
        finally:
            self._start_done = True

    async def stop(self, now: bool = False) -> None:
        """Stop the server and free its slot."""
        try:
            await super().stop(now=now)
        finally:
            slot = self._slot
            if slot is not None:
                self.ledger.release(slot.user, slot.server, slot.token)
            else:
                held = self.ledger.get(self.user.name, self.name)
                # a slot adopted from the engine at Hub start belongs to this server
                if held is not None and held.state == RUNNING:
                    self.ledger.release(held.user, held.server, held.token)
            self._slot = None
            self._update_metrics()

    async def poll(self) -> int | str | None:
        """Poll the server; a server found dead frees its slot at once."""
        await self.ensure_ledger()
        self.ledger.claim(self.user.name, self.name)
        status = await super().poll()
        if status is not None and self._start_done:
            held = self.ledger.get(self.user.name, self.name)
            if held is not None and held.state == RUNNING:
                self.ledger.release(held.user, held.server, held.token)
                self._update_metrics()
        return status

    def load_state(self, state: dict) -> None:
        """Restore state and mark this server's slot as owned (not an orphan)."""
        super().load_state(state)
        if state.get("object_id"):
            self.ledger.claim(self.user.name, self.name)

    def get_state(self) -> dict:
        """Persist the charged group and GPUs beside DockerSpawner's object id."""
        state = super().get_state()
        slot = self._slot
        if slot is not None and state.get("object_id"):
            state["group"] = slot.pool
            state["gpus"] = list(slot.gpus)
        return state

    # -- container details shared by both engines --------------------------------
    def get_env(self) -> dict[str, str]:
        """The Spawner's environment, with the image decided for this start."""
        env = super().get_env()
        request = getattr(self, "_request", None)
        if request is not None:
            env["JUPYTER_IMAGE_SPEC"] = request.image
        return env

    async def command_for(self, image: str) -> list[str]:
        """``cmd`` (or the image's own command) plus the Spawner's arguments.

        Takes the image of this start rather than the ``image`` trait, which is never
        changed per start so that nothing leaks into the next one.
        """
        if self.cmd:
            cmd = list(self.cmd)
        else:
            info = await self.docker("inspect_image", image)
            cmd = list(info["Config"]["Cmd"] or [])
        return cmd + self.get_args()

    def storage_mounts(self, pool: str, limits: GroupLimits) -> list[dict[str, Any]]:
        """Home and group mounts as ``{"source", "target", "type", "read_only"}`` dicts."""
        ns = {"username": safe_name(self.user.name), "group": safe_name(pool)}
        mounts = []
        home = limits.home if limits.home is not None else self.home_volume
        if home:
            mounts.append(_mount(home.format(**ns), self.home_mount_point, read_only=False))
        if limits.shared_dir:
            mounts.append(
                _mount(
                    limits.shared_dir.format(**ns),
                    self.shared_mount_point,
                    read_only=limits.shared_readonly,
                )
            )
        for m in mounts:
            if m["source"].rstrip("/").endswith("docker.sock"):
                raise SpawnException(
                    "Refusing to mount the Docker socket into a user container; fix the "
                    "home/shared_dir settings",
                    reason="config",
                    status_code=500,
                )
        return mounts

    def run_as(self, limits: GroupLimits) -> str | None:
        """``uid:gid`` for the container when the group runs servers as the user."""
        if not limits.run_as_user:
            return None
        try:
            entry = pwd.getpwnam(self.user.name)
        except KeyError:
            raise LimitError(
                403,
                "no_uid",
                f"Group limits say to run as your own uid, but {self.user.name!r} has no "
                "account on the hub host. Ask an admin to create it.",
            ) from None
        return f"{entry.pw_uid}:{entry.pw_gid}"

    async def _render_options_form(self) -> str:
        try:
            ceilings = parse_all_group_limits(self.group_limits)
            unlisted = (
                parse_group_limits(self.unlisted_group_limits)
                if self.unlisted_group_limits is not None
                else None
            )
        except ValueError:
            return ""
        groups = self._groups()
        offers = []
        allowed = self._allowed_image_list()
        for name in chargeable_groups(list(groups), ceilings, unlisted):
            limits, _ = apply_properties(ceilings.get(name) or unlisted, groups.get(name))
            offers.append(
                GroupOffer(
                    name=name,
                    limits=limits,
                    in_use=len(self.ledger.slots(name)),
                    images=permitted_images(limits, allowed, self.image),
                )
            )
        return render_options_form(offers, self.image)


def _mount(source: str, target: str, *, read_only: bool) -> dict[str, Any]:
    kind = "bind" if source.startswith("/") else "volume"
    return {"source": source, "target": target, "type": kind, "read_only": read_only}
