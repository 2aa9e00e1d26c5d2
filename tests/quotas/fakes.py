"""Stand-ins for the Hub API and the engine, for the in-process tests of the quotas service."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from jupyterhub.services.auth import HubOAuth

from hub_ext.quotas.docker_source import EngineEvent, EngineSource, EngineUnavailable
from hub_ext.quotas.usage import EngineObject, NodeCapacity
from latticehub import labels as L

PREFIX = "/services/quotas/"


def container(group: str, user: str, server: str = "", *, hub: str = "h1", **extra: Any):
    """An engine object with the spawner's labels."""
    labels = {
        L.HUB: hub,
        L.GROUP: group,
        L.USER: user,
        L.SERVER: server,
        L.NODE: "",
        L.GPUS: "",
        L.GPU_SHARED: "0",
        L.MEM: str(extra.pop("mem", 1024**3)),
        L.CPU: str(extra.pop("cpu", 0.5)),
    }
    labels.update(extra.pop("labels", {}))
    return EngineObject(
        id=f"id-{user}-{server}", labels=labels, image="img:1", created=1000.0, **extra
    )


def server(pending: str | None = None, **extra: Any) -> dict:
    """A Hub server model."""
    return {
        "name": extra.pop("name", ""),
        "ready": pending is None,
        "pending": pending,
        "started": extra.pop("started", "1970-01-01T00:16:40Z"),
        "last_activity": extra.pop("last_activity", "1970-01-01T00:30:00Z"),
        "user_options": extra.pop("user_options", {}),
        **extra,
    }


class FakeHub:
    """The parts of the Hub API the service calls; ``fetch`` is HubSource's seam."""

    def __init__(
        self,
        groups: dict[str, dict],
        users: list[dict],
        queued: dict | None = None,
        *,
        writable: set[str] | None = None,
    ):
        self.groups = copy.deepcopy(groups)
        self.users = users
        self.queued = queued or {}
        self.writable = writable
        self.calls: list[tuple[str, str]] = []

    async def fetch(self, method, url, headers, body):
        parts = urlsplit(url)
        path = parts.path.removeprefix("/hub/api")
        self.calls.append((method, path))
        if parts.path == "/hub/metrics":
            lines = [
                f'latticehub_group_spawns_queued{{group="{g}"}} {n}.0'
                for g, n in self.queued.items()
            ]
            return 200, "\n".join(lines).encode()
        if path == "/users":
            query = parse_qs(parts.query)
            offset, limit = int(query["offset"][0]), int(query["limit"][0])
            items = self.users[offset : offset + limit]
            following = {"offset": offset + limit} if offset + limit < len(self.users) else None
            return 200, json.dumps({"items": items, "_pagination": {"next": following}}).encode()
        if path == "/groups":
            items = [{"name": n, **g} for n, g in self.groups.items()]
            return 200, json.dumps({"items": items, "_pagination": {"next": None}}).encode()
        if path.startswith("/groups/"):
            rest = path.removeprefix("/groups/")
            name, _, tail = rest.partition("/")
            name = unquote(name)
            if name not in self.groups:
                return 404, b'{"status": 404, "message": "No such group"}'
            if method == "PUT" and tail == "properties":
                if self.writable is not None and name not in self.writable:
                    return 403, b'{"status": 403, "message": "Action is not authorized"}'
                self.groups[name]["properties"] = json.loads(body)
            return 200, json.dumps({"name": name, **self.groups[name]}).encode()
        if path == "/user":
            return 200, json.dumps({"name": "quotas", "kind": "service", "scopes": []}).encode()
        return 404, b'{"status": 404, "message": "not here"}'


class FakeEngine(EngineSource):
    """Objects and nodes given by the test; ``fail`` makes every read fail."""

    def __init__(self, objects=(), nodes=None):
        self.objects_list = list(objects)
        self.nodes_list = list(nodes or [NodeCapacity("local", 4.0, 8 * 1024**3, "box")])
        self.fail = False

    async def objects(self):
        if self.fail:
            raise EngineUnavailable("the Docker engine could not list containers: down")
        return list(self.objects_list)

    async def nodes(self):
        return list(self.nodes_list)


class TokenHubAuth(HubOAuth):
    """Identifies callers by ``Authorization: token <name>`` from a table of user models.

    A model without ``access:services!service=quotas`` in its scopes is refused as HubOAuth
    refuses it (403, not 401).
    """

    def __init__(self, models: dict[str, dict]):
        super().__init__(
            api_token="unused",
            oauth_client_id="service-quotas",
            base_url=PREFIX,
            hub_prefix="/hub/",
            api_url="http://127.0.0.1:9/hub/api",
            access_scopes={"access:services!service=quotas"},
        )
        self.models = models

    def get_user(self, handler, *, sync=True):
        scheme, _, token = handler.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "token" or not token:
            return None
        handler._token_authenticated = True
        model = self.models.get(token.strip())
        return copy.deepcopy(model) if model else None


class Clock:
    """A clock that moves when the test sets ``now``."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedEngine(FakeEngine):
    """Events in the engine's log, and the running objects, as the test sets them."""

    def __init__(self):
        super().__init__()
        self.log: list[EngineEvent] = []
        self.keep_events = True  # False: the engine's event log forgot everything
        self.reads: list[tuple[float, float]] = []

    def start(self, object_id: str, at: float, group: str, user: str, **labels: str) -> None:
        obj = container(group, user, labels=labels)
        obj = type(obj)(id=object_id, labels=obj.labels, image="img:1", created=at)
        self.log.append(EngineEvent("start", object_id, at, dict(obj.labels), "img:1"))
        self.objects_list.append(obj)

    def stop(self, object_id: str, at: float) -> None:
        labels = next(o.labels for o in self.objects_list if o.id == object_id)
        self.log.append(EngineEvent("die", object_id, at, dict(labels), "img:1"))
        self.objects_list = [o for o in self.objects_list if o.id != object_id]

    async def lifecycle_events(self, since: float, until: float) -> list[EngineEvent]:
        self.reads.append((since, until))
        if self.fail:
            raise EngineUnavailable("the Docker engine could not list events: down")
        if not self.keep_events:
            return []
        return sorted((e for e in self.log if since <= e.time <= until), key=lambda e: e.time)
