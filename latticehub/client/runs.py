"""Runs: create, get, change, search; batches, metric history, logs, timeline, live updates."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

from ..columnar import NPZ_TYPE, MetricColumns, read_npz
from .base import ClientBase, Page, follow, next_token, query, segment

#: Points per metric-history request (the service's largest page).
HISTORY_PAGE = 50_000
#: Log streams of a run.
STREAMS = ("stdout", "stderr")


class RunsAPI(ClientBase):
    """The run endpoints (mixed into :class:`~latticehub.client.TrackingClient`)."""

    # -- runs --------------------------------------------------------------------------------
    def create_run(
        self,
        project: int | str,
        *,
        name: str = "",
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        status: str | None = None,
        start_time: int | None = None,
    ) -> dict[str, Any]:
        """Create a run (``POST /runs``) in a project given by id or name.

        Args:
            project: the project's id, or its name as you would resolve it.
            name: the run's display name.
            params: parameters (strings; write-once).
            tags: tags.
            status: ``RUNNING`` (the service's default) or ``QUEUED``.
            start_time: ms since the epoch (default: now).
        """
        body: dict[str, Any] = {"project": project, "name": name}
        body.update(query(params=params or None, tags=tags or None, status=status))
        if start_time is not None:
            body["start_time"] = start_time
        return self.request("POST", "/runs", body)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run with params, tags and latest metrics (``GET /runs/{id}``)."""
        return self.request("GET", f"/runs/{segment(run_id)}")

    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        status_reason: str | None = None,
        end_time: int | None = None,
        name: str | None = None,
        code: dict[str, Any] | None = None,
        environment: dict[str, Any] | None = None,
        failure: dict[str, Any] | None = None,
        heartbeat: int | None = None,
    ) -> dict[str, Any]:
        """Change a run (``PATCH /runs/{id}``); only the arguments given are sent.

        Args:
            run_id: the run.
            status: ``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED`` ...
            status_reason: why it is in that status (shown by the panels).
            end_time: ms since the epoch.
            name: a new display name.
            code: the code version (:func:`~latticehub.client.environment.code_version`).
            environment: :func:`~latticehub.client.environment.environment`.
            failure: ``{"type", "message", "traceback", "exit_code"}``.
            heartbeat: ms since the epoch: the run is alive.
        """
        body = {
            k: v
            for k, v in {
                "status": status, "status_reason": status_reason, "end_time": end_time,
                "name": name, "code": code, "environment": environment, "failure": failure,
                "heartbeat": heartbeat,
            }.items()
            if v is not None
        }  # fmt: skip
        return self.request("PATCH", f"/runs/{segment(run_id)}", body)

    def search_runs_page(
        self,
        project: int | list[int] | None = None,
        *,
        filter: str = "",
        order_by: list[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page:
        """One page of runs (``GET /runs``), sorted and filtered by the service.

        Args:
            project: a project id, several, or ``None`` for every project you may read.
            filter: MLflow's grammar, e.g. ``"metrics.loss < 0.5 and params.L = '8'"``.
            order_by: clauses such as ``["metrics.loss ASC", "attributes.start_time DESC"]``.
            max_results: page size.
            page_token: the ``next_token`` of the previous page.
        """
        return self.page("/runs", _search(project, filter, order_by, max_results, page_token))

    def search_runs(
        self, project: int | list[int] | None, filter: str = "", order_by: list[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """All runs of a project that match ``filter`` (a generator; pages followed)."""
        return follow(
            lambda token: self.search_runs_page(
                project, filter=filter, order_by=order_by, max_results=1000, page_token=token
            )
        )

    def run_table_page(
        self,
        project: int | list[int] | None = None,
        *,
        filter: str = "",
        order_by: list[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> tuple[dict[str, list[Any]], str | None]:
        """One page of a run search as columns (``GET /runs/columns``), and the next token.

        The same arguments as :meth:`search_runs_page`; pages of up to 100,000 runs.
        """
        params = _search(project, filter, order_by, max_results, page_token)
        body = self.request("GET", "/runs/columns", params=params)
        return body["columns"], next_token(body)

    def run_table(
        self, project: int | list[int] | None, filter: str = "", order_by: list[str] | None = None
    ) -> dict[str, list[Any]]:
        """Every matching run as columns (pages of 100,000 followed and joined)."""
        table: dict[str, list[Any]] = {}
        rows, token = 0, None
        while True:
            page, token = self.run_table_page(
                project, filter=filter, order_by=order_by, max_results=100_000, page_token=token
            )
            count = len(page.get("run_id", []))
            for name in table.keys() - page.keys():  # keys this page's runs lack
                table[name] += [None] * count
            for name, column in page.items():
                table.setdefault(name, [None] * rows).extend(column)
            rows += count
            if not token:
                return table

    # -- writing -------------------------------------------------------------------------------
    def log_batch(
        self,
        run_id: str,
        *,
        metrics: list[dict[str, Any]] | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Write metrics, params and tags in one request (``POST /runs/{id}/batch``; retry-safe).

        Args:
            run_id: the run.
            metrics: points ``{"key", "value", "step"?, "timestamp"?}``.
            params: parameters (write-once).
            tags: tags.
        """
        body = query(metrics=metrics or None, params=params or None, tags=tags or None)
        self.request("POST", f"/runs/{segment(run_id)}/batch", body)

    def log_metric_columns(self, run_id: str, columns: Sequence[MetricColumns]) -> int:
        """Write points as columns, the compact batch (``POST /runs/{id}/metrics``; retry-safe).

        Args:
            run_id: the run.
            columns: one :class:`~latticehub.columnar.MetricColumns` per key, at most
                :data:`~latticehub.columnar.MAX_BATCH_POINTS` points in all.

        Returns:
            The number of points the service took.
        """
        body = {"metrics": [c.to_json() for c in columns if len(c)]}
        return self.request("POST", f"/runs/{segment(run_id)}/metrics", body)["points"]

    def metric_columns(self, run_id: str, key: str) -> MetricColumns:
        """A metric's whole history as columns (``GET /runs/{id}/history/{key}``, ``.npz``).

        One request, binary: a million points are about 24 MB and take well under a second.
        """
        path = f"/runs/{segment(run_id)}/history/{urllib.parse.quote(key)}"
        with self.open("GET", path, headers={"Accept": NPZ_TYPE}) as answer:
            return read_npz(answer.read(), key)

    def append_logs(
        self, run_id: str, stream: str, offset: int, lines: list[str], partial: str | None = None
    ) -> int:
        """Append output lines at ``offset`` (``POST /runs/{id}/logs/{stream}``; idempotent).

        Returns:
            The offset of the next line.
        """
        body: dict[str, Any] = {"offset": offset, "lines": lines}
        if partial is not None:
            body["partial"] = partial
        return self.request("POST", f"/runs/{segment(run_id)}/logs/{segment(stream)}", body)[
            "next_offset"
        ]

    # -- reading -------------------------------------------------------------------------------
    def get_logs(
        self, run_id: str, stream: str = "stdout", *, offset: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        """Output lines from ``offset`` (``GET /runs/{id}/logs/{stream}``).

        Returns:
            ``{"items": [{"offset", "text", "timestamp"}], "next_offset"}``.
        """
        path = f"/runs/{segment(run_id)}/logs/{segment(stream)}"
        return self.request("GET", path, params=query(offset=offset, limit=limit))

    def iter_logs(self, run_id: str, stream: str = "stdout") -> Iterator[dict[str, Any]]:
        """Every stored line of a stream, oldest first (pages followed)."""
        offset = 0
        while True:
            page = self.get_logs(run_id, stream, offset=offset)
            yield from page["items"]
            if not page["items"] or page["next_offset"] <= offset:
                return
            offset = page["next_offset"]

    def metric_history_page(
        self, run_id: str, key: str, *, offset: int = 0, limit: int = HISTORY_PAGE
    ) -> list[dict[str, Any]]:
        """Points of one metric from ``offset`` (``GET /runs/{id}/metrics/{key}``).

        Values that are not finite come as the strings ``"NaN"``, ``"Infinity"``.
        """
        path = f"/runs/{segment(run_id)}/metrics/{urllib.parse.quote(key)}"
        return self.request("GET", path, params={"offset": offset, "limit": limit})["items"]

    def get_metric_history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        """A metric's whole history ``[{"key", "value", "timestamp", "step"}]`` (pages followed)."""
        points: list[dict[str, Any]] = []
        while True:
            page = self.metric_history_page(run_id, key, offset=len(points))
            points += page
            if len(page) < HISTORY_PAGE:
                return points

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's job timeline, oldest first (``GET /runs/{id}/events``)."""
        return self.request("GET", f"/runs/{segment(run_id)}/events")["items"]

    # -- live ----------------------------------------------------------------------------------
    def run_updates(
        self,
        run_id: str,
        cursor: dict[str, Any] | None = None,
        *,
        wait: float | None = None,
        tail: int = 200,
        metrics: bool = True,
        logs: bool = True,
    ) -> dict[str, Any]:
        """One long-poll round: what is new since ``cursor`` (``GET /runs/{id}/updates``).

        The first round (``cursor=None``) asks for the last ``tail`` lines and the whole
        metric history (``metrics.reset`` is true) and does not wait; pass the answer's
        ``cursor`` to the next round. The request's timeout is the client's plus ``wait``.

        Args:
            run_id: the run.
            cursor: the previous answer's ``cursor`` (``None``: start).
            wait: seconds the service may wait for news (default :meth:`long_poll_wait`).
            tail: lines of each stream on the first round.
            metrics: include metric points.
            logs: include log lines.

        Returns:
            ``{"run", "cursor", "stdout", "stderr", "metrics", "timeline", "done"}`` (see
            docs/live.md).
        """
        params: dict[str, Any]
        if cursor is None:
            params = {"tail": tail, "wait": 0}
            if metrics:
                params["metrics"] = 1
        else:
            wait = self.long_poll_wait() if wait is None else wait
            params = {"stdout": cursor["stdout"], "stderr": cursor["stderr"],
                      "events": cursor["events"], "wait": round(wait, 2),
                      "partial_stdout": cursor.get("partial_stdout", 0),
                      "partial_stderr": cursor.get("partial_stderr", 0)}  # fmt: skip
            if metrics:
                params["metrics"] = cursor.get("metrics") or 1
        if not logs:
            params["logs"] = 0
        timeout = float(self.timeout) + float(params["wait"])
        return self.request(
            "GET", f"/runs/{segment(run_id)}/updates", params=params, timeout=timeout
        )

    def follow_run(self, run_id: str, *, wait: float | None = None) -> Iterator[dict[str, Any]]:
        """Long-poll rounds of :meth:`run_updates` until the run ended and all was read."""
        cursor = None
        while True:
            body = self.run_updates(run_id, cursor, wait=wait)
            yield body
            if body["done"]:
                return
            cursor = body["cursor"]

    def stream_run(
        self, run_id: str, *, tail: int | None = None, metrics: bool = True
    ) -> Iterator[tuple[str, Any]]:
        """Server-sent events of a run (``GET /runs/{id}/stream``) as ``(event, data)``.

        Events: ``run``, ``log``, ``partial``, ``metrics``, ``timeline`` and last ``end``
        (``{"reason": "finished"}`` or ``{"reason": "access_revoked", ...}``). The service
        ends a stream after a while; :meth:`follow_run` resumes by itself.
        """
        params = query(tail=tail, metrics=1 if metrics else None)
        with self.open("GET", f"/runs/{segment(run_id)}/stream", params=params) as answer:
            yield from parse_events(iter(answer.readline, b""))


def parse_events(lines: Iterator[bytes]) -> Iterator[tuple[str, Any]]:
    r"""``(event, data)`` of a ``text/event-stream``; data is decoded JSON (text if not JSON).

    >>> list(parse_events(iter([b"retry: 2000\n", b"\n", b"event: end\n",
    ...                         b'data: {"reason": "finished"}\n', b"\n"])))
    [('end', {'reason': 'finished'})]
    """
    event, data = "message", list[str]()
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    yield event, json.loads(text)
                except ValueError:
                    yield event, text
            event, data = "message", []
        elif line.startswith(":"):
            continue  # a keep-alive comment
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


def _search(
    project: int | list[int] | None,
    filter: str,
    order_by: list[str] | None,
    max_results: int | None,
    page_token: str | None,
) -> dict[str, Any]:
    """The query of a run search (``GET /runs`` and ``GET /runs/columns`` take the same)."""
    return query(
        project=project, filter=filter, order_by=order_by or None,
        max_results=max_results, page_token=page_token,
    )  # fmt: skip
