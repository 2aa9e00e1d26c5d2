"""Live streams across replicas: PostgreSQL LISTEN/NOTIFY between the replicas' change feeds.

Each replica's :class:`~hub_ext.experiments.live.LiveBus` wakes only that process's readers.
With several replicas over one PostgreSQL database, a :class:`ReplicaBridge` on each one
sends what its writers hand the bus (``notify``, ``publish_metrics``, ``set_partial``) as one
``NOTIFY`` on :data:`CHANNEL`, and applies what the others send to its own bus, so that a
write on replica A wakes the readers on replica B and B's metric ring gets A's points.

A notification's payload (PostgreSQL allows less than 8000 bytes) is JSON::

    {"v": 1, "r": "<replica id>", "run": "<run id>", "t": ["stdout"],
     "p": [[key, value, step, timestamp], ...], "g": 0, "s": {"stdout": "<partial>"}}

``t`` the topics of a ``notify``; ``p`` the newest metric points of a write, as many as fit
(values as the API writes them: NaN and the infinities as strings); ``g`` the number of
older points of the write that did not fit: the receiving replica then makes its readers
reload the metric history from the store (their ``reset``), so that no point is silently
missed; ``s`` an unfinished line (its tail, if the whole line does not fit). A replica skips
the notifications it sent itself (``r``).

The listener reconnects with backoff when PostgreSQL restarts or the connection breaks;
notifications sent meanwhile are lost, so each time it starts listening every reader of this
replica re-reads everything from the store (:meth:`LiveBus.resync`). On SQLite nothing of this runs
(one process). See docs/replicas.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine

from .live import LiveBus
from .serialize import metric, number_json

#: The channel every replica of the experiments service listens on (per database).
CHANNEL = "latticehub_experiments_live"
#: The largest payload sent, in bytes (PostgreSQL refuses 8000 and more).
MAX_PAYLOAD = 7900
#: Payload format version (``v``).
FORMAT = 1


class ReplicaBridge:
    """Forwards one replica's live changes to the others, and theirs to it.

    Args:
        bus: this replica's change feed.
        engine: the tracking store's engine (PostgreSQL); notifications are sent on it.
        conninfo: where the listening connection goes (default: the engine's database).
        replica_id: this replica's id in the payloads (default: random).
        max_payload: the largest payload in bytes (less than 8000).
        backoff_s: ``(first, longest)`` seconds between reconnection attempts.
        check_s: seconds without a notification after which the listening connection is
            checked (a half-open TCP connection otherwise goes unnoticed).
        log: the logger.
    """

    def __init__(
        self,
        bus: LiveBus,
        engine: Engine,
        *,
        conninfo: str | None = None,
        replica_id: str | None = None,
        max_payload: int = MAX_PAYLOAD,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        check_s: float = 30.0,
        log: logging.Logger | None = None,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(
                f"live streams across replicas need PostgreSQL, not {engine.dialect.name}: "
                "run one replica on SQLite"
            )
        if not 200 <= max_payload < 8000:
            raise ValueError(f"max_payload={max_payload} must be 200..7999 bytes")
        self.bus = bus
        self.engine = engine
        self.conninfo = conninfo or engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self.replica_id = replica_id or secrets.token_hex(6)
        self.max_payload = max_payload
        self.backoff_s = backoff_s
        self.check_s = check_s
        self.log = log or logging.getLogger("latticehub.replicas")
        #: set while the listening connection is up (tests wait on it)
        self.listening = threading.Event()
        self.sent = 0
        self.received = 0
        self._sender: Any = None  # psycopg.Connection, made on the first send
        # how :meth:`encode` starts this replica's payloads (skipped unparsed when heard back)
        self._own_prefix = _dumps({"v": FORMAT, "r": self.replica_id})[:-1] + ","
        self._send_lock = threading.Lock()

    def attach(self) -> ReplicaBridge:
        """Make the bus forward its local changes through this bridge; returns self."""
        self.bus.forward = self.send
        return self

    # -- sending -----------------------------------------------------------------------------
    def send(
        self,
        run_id: str,
        topics: Sequence[str],
        points: Sequence[Any],
        partial: tuple[str, str] | None,
        older: int = 0,
    ) -> None:
        """NOTIFY the other replicas of one change (a failure is logged, not raised).

        The write itself is stored already; a lost notification only delays the other
        replicas' readers until their next change or reconnect. ``older`` counts the write's
        points before ``points`` that are not sent (they count as skipped).
        """
        payload = self.encode(run_id, topics, points, partial, older)
        try:
            self._notify(payload)
            self.sent += 1
        except Exception as e:  # noqa: BLE001 - psycopg's or the network's: logged, not raised
            self.log.warning("live change of run %s not sent to other replicas: %s", run_id, e)

    def _notify(self, payload: str) -> None:
        """``pg_notify`` on a connection of the sender's own, in autocommit: one round trip.

        (A pooled connection would cost a ping, a commit and a reset per write.) Writers on
        several threads share it under a lock; a broken connection is replaced once.
        """
        import psycopg  # the ``postgres`` extra; SQLite deployments never get here

        with self._send_lock:
            for attempt in (1, 2):
                if self._sender is None or self._sender.closed:
                    self._sender = psycopg.connect(self.conninfo, autocommit=True)
                try:
                    self._sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                    return
                except psycopg.OperationalError:
                    self._sender.close()
                    self._sender = None
                    if attempt == 2:
                        raise

    def close(self) -> None:
        """Close the sending connection (the listener stops when its task is cancelled)."""
        with self._send_lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None

    def encode(
        self,
        run_id: str,
        topics: Sequence[str],
        points: Sequence[Any],
        partial: tuple[str, str] | None,
        older: int = 0,
    ) -> str:
        """The payload of one change, at most :attr:`max_payload` bytes (see the module doc)."""
        body: dict[str, Any] = {"v": FORMAT, "r": self.replica_id, "run": run_id}
        if topics:
            body["t"] = list(topics)
        if partial is not None:
            body["s"] = {partial[0]: partial[1]}
        if points or older:
            body["g"] = len(points) + older  # all skipped, until they are placed below
        raw = _dumps(body)
        # a long unfinished line leaves at least half the room to metric points
        limit = self.max_payload // 2 if points else self.max_payload
        if partial is not None and _size(raw) > limit:
            stream, text = partial
            while _size(raw) > limit and text:
                over = _size(raw) - limit  # bytes; a character takes 1 to 6 (escaped)
                text = text[max(over // 6, len(text) // 16, 1) :]  # the tail is what is shown
                body["s"] = {stream: text}
                raw = _dumps(body)
        if not points:
            return raw
        # the newest points that fit; room for the list's brackets and the count's digits
        room = self.max_payload - _size(raw) - len(',"p":[]') - 8
        count = len(points)
        # as many as the newest point's size says fit, then fewer while the list is too long
        # (one encoding of the list each time, not one per point)
        take = min(count, room // (_size(_dumps(_compact(points[-1]))) + 1))
        kept = ""
        while take > 0:
            kept = _dumps([_compact(p) for p in points[count - take :]])[1:-1]
            if _size(kept) <= room:
                break
            take = min(take - 1, take * room // _size(kept))
        if take <= 0:
            take, kept = 0, ""
        body["g"] = count - take + older
        if not body["g"]:
            del body["g"]
        raw = _dumps(body)
        return f'{raw[:-1]},"p":[{kept}]}}' if kept else raw

    # -- receiving ---------------------------------------------------------------------------
    def apply(self, payload: str) -> bool:
        """Apply one notification's payload to the bus; False if skipped (ours, or not ours).

        Runs on the bus's event loop.
        """
        if payload.startswith(self._own_prefix):  # each replica hears its own NOTIFYs
            return False
        try:
            body = json.loads(payload)
            if body.get("v") != FORMAT or body.get("r") == self.replica_id:
                return False
            run_id = str(body["run"])
            points = [_expand(p) for p in body.get("p", ())]
            partials = {str(k): str(v) for k, v in (body.get("s") or {}).items()}
            topics = [str(t) for t in body.get("t", ())]
            skipped = int(body.get("g", 0))
        except (ValueError, KeyError, TypeError) as e:
            self.log.warning("ignored a live notification that is not ours: %s", e)
            return False
        self.bus.apply_remote(run_id, topics, points, skipped, partials)
        self.received += 1
        return True

    async def run_forever(self) -> None:
        """Listen on :data:`CHANNEL` until cancelled, reconnecting with backoff."""
        import psycopg  # the ``postgres`` extra; SQLite deployments never get here

        delay = self.backoff_s[0]
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            except (psycopg.Error, OSError) as e:
                self.log.warning("live link to other replicas: cannot connect (%s); retry in "
                                 "%.1f s", e, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_s[1])
                continue
            try:
                await conn.execute(f"LISTEN {CHANNEL}")
                self.listening.set()
                # what the others sent before LISTEN (start, or a break) is lost: re-read all
                self.bus.resync()
                delay = self.backoff_s[0]
                while True:
                    async for note in conn.notifies(timeout=self.check_s):
                        try:
                            self.apply(note.payload)
                        except Exception:  # one bad change must not stop the link
                            self.log.exception("live change from another replica not applied")
                    await conn.execute("SELECT 1")  # raises when the server went away
            except (psycopg.Error, OSError) as e:
                self.log.warning("live link to other replicas broke (%s); reconnecting in "
                                 "%.1f s", e, delay)  # fmt: skip
            finally:
                self.listening.clear()
                try:
                    await conn.close()
                except (psycopg.Error, OSError):
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_s[1])


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _compact(point: Any) -> list[Any]:
    """``[key, value, step, timestamp]`` of a store ``Metric`` or a point dict."""
    item = point if isinstance(point, dict) else metric(point)
    value = item["value"]
    if isinstance(value, float):
        value = number_json(value)  # NaN, infinities: strings, as the API writes them
    return [item["key"], value, item["step"], item["timestamp"]]


def _expand(item: list[Any]) -> dict[str, Any]:
    key, value, step, timestamp = item
    return {"key": key, "value": value, "timestamp": timestamp, "step": step}
