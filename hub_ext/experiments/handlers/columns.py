"""Metrics as columns: the compact batch in, a whole history out (JSON arrays or ``.npz``).

``POST /api/v1/runs/{id}/metrics`` takes one object per metric key with arrays of steps,
values and timestamps (:mod:`latticehub.columnar`), gzip-compressed or not, and stores it at
driver speed. ``GET /api/v1/runs/{id}/history/{key}`` answers a metric's whole history as
three columns: JSON arrays, or with ``Accept: application/x-npz`` a NumPy ``.npz`` that
``numpy.load`` opens. Long histories are streamed in pieces, each sent before the next is
made, so the service holds about one copy of the columns, not the answer beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tornado.ioloop import IOLoop

from latticehub.columnar import (
    MAX_BATCH_POINTS,
    NPZ_TYPE,
    ColumnsError,
    MetricColumns,
    json_values,
    npz_members,
    parse_metric_columns,
)

from ..store.abstract import now_ms
from ..store.errors import invalid
from .base import BaseHandler
from .schemas import INT64, KEY, PathItems, obj, operation

#: Points per piece of a streamed JSON history.
JSON_PIECE_POINTS = 65_536


class MetricColumnsHandler(BaseHandler):
    """``/api/v1/runs/{id}/metrics``: the compact batch."""

    def post(self, run_id: str) -> None:
        """Store ``{"metrics": [{key, steps, values, timestamps?}]}`` (retry-safe)."""
        self.writable_run(run_id, data=False)
        try:
            columns = parse_metric_columns(self.json_body(), now_ms())
        except ColumnsError as e:
            raise invalid(str(e)) from None
        stored = self.store.log_metric_columns(run_id, columns)
        self.publish_columns(run_id, columns)
        self.touched_run = None  # publish_columns woke the readers already
        self.write_json({"points": stored})


class MetricHistoryColumnsHandler(BaseHandler):
    """``/api/v1/runs/{id}/history/{key}``: a whole history as columns."""

    async def get(self, run_id: str, key: str) -> None:
        """JSON ``{key, count, steps, timestamps, values}``, or ``.npz`` by ``Accept``."""
        self.find_run(run_id, data=False)
        binary = NPZ_TYPE in self.request.headers.get("Accept", "")
        # a long history takes a while to read: off the event loop
        columns = await IOLoop.current().run_in_executor(
            None, self.store.metric_history_columns, run_id, key
        )
        if binary:
            self.set_header("Content-Type", NPZ_TYPE)
            self.set_header("Content-Disposition", f'attachment; filename="{run_id}-history.npz"')
            pieces = npz_members(columns)
        else:
            self.set_header("Content-Type", "application/json")
            pieces = _json_pieces(columns)
        for piece in pieces:
            if piece:
                self.write(piece)
                await self.flush()  # one piece in memory at a time
        del columns


def _json_pieces(columns: MetricColumns) -> Iterator[bytes]:
    """The JSON answer in pieces; values that are not finite as strings, as everywhere."""
    yield json.dumps({"key": columns.key, "count": len(columns)})[:-1].encode()
    for name, column, convert in (
        ("steps", columns.steps, _plain),
        ("timestamps", columns.timestamps, _plain),
        ("values", columns.values, json_values),
    ):
        yield f', "{name}": ['.encode()
        for start in range(0, len(column), JSON_PIECE_POINTS):
            text = json.dumps(convert(column[start : start + JSON_PIECE_POINTS]))[1:-1]
            yield (", " + text if start else text).encode()
        yield b"]"
    yield b"}"


def _plain(column: Any) -> list:
    return column.tolist()


default_handlers = [
    (r"/api/v1/runs/([0-9a-zA-Z]+)/metrics", MetricColumnsHandler),
    (r"/api/v1/runs/([0-9a-zA-Z]+)/history/(.+)", MetricHistoryColumnsHandler),
]

_NUMBERS = {
    "type": "array",
    "items": {"type": ["number", "string"]},
    "description": 'numbers; "NaN", "Infinity", "-Infinity" for values that are not finite',
}
_INTS = {"type": "array", "items": INT64}
_COLUMN_IN = obj(
    {
        "key": KEY,
        "steps": _INTS,
        "values": _NUMBERS,
        "timestamps": {
            "oneOf": [_INTS, INT64],
            "description": "ms since the epoch: one per value, or one for all (default: now)",
        },
    },
    ("key", "steps", "values"),
)

#: OpenAPI path items of this module's routes, assembled by :mod:`.openapi`.
openapi_paths: PathItems = {
    "/api/v1/runs/{run_id}/metrics": {
        "post": operation(
            "Log metrics as columns (the compact batch); retry-safe; gzip accepted",
            description=(
                f"One object per metric key with equally long arrays; at most "
                f"{MAX_BATCH_POINTS} points a request. Send Content-Encoding: gzip to "
                "compress the body."
            ),
            returns=obj({"points": {"type": "integer"}}, ("points",)),
            body=obj({"metrics": {"type": "array", "items": _COLUMN_IN}}, ("metrics",)),
        ),
    },
    "/api/v1/runs/{run_id}/history/{key}": {
        "get": operation(
            "A metric's whole history as columns (JSON arrays, or .npz by Accept)",
            description=(
                f"With Accept: {NPZ_TYPE} the answer is a NumPy .npz holding step.npy, "
                "timestamp.npy (int64) and value.npy (float64); numpy.load opens it."
            ),
            returns=obj(
                {
                    "key": {"type": "string", "description": "the key asked for"},
                    "count": {"type": "integer", "minimum": 0},
                    "steps": _INTS,
                    "timestamps": _INTS,
                    "values": _NUMBERS,
                },
                ("key", "count", "steps", "timestamps", "values"),
            ),
        )
    },
}
