"""Group limits for Docker-based spawners: traits, the start-time policy and the ledger.

:class:`GroupLimitsMixin` holds what the Docker and the Swarm spawner share. Each
concrete spawner supplies how to list its objects in the engine and how to create one.
"""

from __future__ import annotations

import asyncio
import pwd
from collections.abc import Mapping
from typing import Any, ClassVar

from jupyterhub.spawner import SpawnException
from traitlets import default

from latticehub.limits import (
    GroupLimits,
    LimitError,
    ServerRequest,
    apply_properties,
    chargeable_groups,
    choose_group,
    image_aliases,
    parse_all_group_limits,
    parse_group_limits,
    permitted_images,
    resolve_request,
    with_default_image,
)
from latticehub.naming import safe_name
from latticehub.slots import RUNNING, Slot
from latticehub.units import parse_bytes

from . import metrics
from .form import GroupOffer, options_from_form, render_options_form
from .ledger import SlotLedger
from .traits import GroupLimitsConfig


class GroupLimitsMixin(GroupLimitsConfig):
    """Per-group limits shared by :class:`GroupLimitDockerSpawner` and the Swarm variant."""

    # one ledger per hub id in this process: spawner objects are per server, the ledger
    # must see all of them (as DockerSpawner shares its client and executor)
    _ledgers: ClassVar[dict[str, SlotLedger]] = {}

    @default("options_form")
    def _default_options_form(self) -> Any:
        return type(self)._render_options_form

    @default("options_from_form")
    def _default_options_from_form(self) -> Any:
        return options_from_form

    # -- per-start state (reset on every start) ----------------------------------------
    _slot: Slot | None = None
    _request: ServerRequest | None = None
    _run_as: str | None = None
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
        limits = self.effective_limits(choice.pool, choice.limits, groups.get(choice.pool))
        request = resolve_request(
            group=choice.pool,
            limits=limits,
            options=options,
            default_image=self.image,
            allowed_images=self._image_aliases(),
            default_mem=parse_bytes(self.mem_limit) if self.mem_limit else None,
            default_cpu=self.cpu_limit,
        )
        return choice.pool, limits, request

    def effective_limits(
        self,
        pool: str,
        ceiling: GroupLimits,
        properties: Mapping[str, Any] | None,
        *,
        warn: bool = True,
    ) -> GroupLimits:
        """A group's ceiling, deny-by-default images filled in, lowered by its properties.

        A ceiling without ``images`` allows the spawner's default ``image`` only; that list
        is made explicit before the manager's properties are applied, so that a manager
        can narrow it but never name another image.

        Args:
            pool: the group (for the log).
            ceiling: the admin's limits of the group.
            properties: the group's JupyterHub properties.
            warn: log the property values that were ignored (at spawns, not for the form).
        """
        limits, warnings = apply_properties(with_default_image(ceiling, self.image), properties)
        for warning in warnings if warn else ():
            self.log.warning("group %s properties: %s", pool, warning)
        return limits

    def _image_aliases(self) -> dict[str, str] | None:
        """``allowed_images`` (evaluated if callable) as alias -> image, or ``None``."""
        try:
            return image_aliases(self._get_allowed_images())
        except ValueError as e:
            raise LimitError(500, "config", f"{e}. An admin must fix allowed_images.") from None

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
        self.ledger.orphans_reported = True
        self._update_metrics()  # sets the orphan gauge from now on
        orphans = self.ledger.orphans()
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
        if ledger.orphans_reported:  # before that, adopted slots may still be claimed
            metrics.ORPHANS.set(len(ledger.orphans()))
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
        self._run_as = None
        pool = str((self.user_options or {}).get("group") or "-")
        try:
            self.emit("Checking the group's limits", 5)
            await self.ensure_ledger()
            try:
                pool, limits, request = self.resolve(self.user_options or {})
                self._run_as = self.run_as(limits)
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
        if entry.pw_uid == 0:
            raise LimitError(
                403,
                "no_uid",
                f"{self.user.name!r} maps to uid 0 on the hub host; user containers never run "
                "as root. Ask an admin to map the user to a regular account.",
            )
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
        try:
            aliases = self._image_aliases()
        except LimitError:
            return ""
        for name in chargeable_groups(list(groups), ceilings, unlisted):
            ceiling = ceilings.get(name) or unlisted or GroupLimits()
            limits = self.effective_limits(name, ceiling, groups.get(name), warn=False)
            offers.append(
                GroupOffer(
                    name=name,
                    limits=limits,
                    in_use=len(self.ledger.slots(name)),
                    images=permitted_images(limits, aliases, self.image),
                )
            )
        return render_options_form(offers, self.image)


def _mount(source: str, target: str, *, read_only: bool) -> dict[str, Any]:
    kind = "bind" if source.startswith("/") else "volume"
    return {"source": source, "target": target, "type": kind, "read_only": read_only}
