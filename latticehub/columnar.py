"""Metric points as columns: the compact batch format and the binary history form.

Both ends of the tracking API use this (standard library only):

- **The compact batch** (``POST /api/v1/runs/{id}/metrics``): one object per metric key
  with arrays instead of one object per point::

      {"metrics": [{"key": "loss", "steps": [0, 1, 2], "values": [0.9, 0.5, "NaN"],
                    "timestamps": [1700000000000, ...]}]}

  ``timestamps`` may be one integer for every point, or left out (the time of arrival).
  Values that are not finite are the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
  (standard JSON has no literal for them). :func:`parse_metric_columns` checks a body and
  turns it into :class:`MetricColumns` with C-speed conversions (``array``), no Python
  object per point on the common path.
- **The binary history** (``GET /api/v1/runs/{id}/history/{key}`` with
  ``Accept: application/x-npz``): a NumPy ``.npz`` archive (an uncompressed zip) holding
  ``step.npy`` and ``timestamp.npy`` (int64) and ``value.npy`` (float64), which
  ``numpy.load`` opens directly. :func:`npz_members` writes it piece by piece (so a long
  history is streamed), :func:`read_npz` reads it back without NumPy.
"""

from __future__ import annotations

import io
import math
import sys
import zipfile
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

#: Points a compact batch may hold in all (keys together); the client sends fewer.
MAX_BATCH_POINTS = 100_000
#: Points per compact batch the client sends.
CLIENT_BATCH_POINTS = 50_000
#: The media type of the binary history.
NPZ_TYPE = "application/x-npz"
#: Non-finite values as the strings JSON carries them, and back.
_FROM_TEXT = {
    "NaN": math.nan,
    "nan": math.nan,
    "Infinity": math.inf,
    "inf": math.inf,
    "-Infinity": -math.inf,
    "-inf": -math.inf,
}
_BYTE_ORDER = "<" if sys.byteorder == "little" else ">"
#: Bytes of column data per piece handed to the writer (keeps a streamed answer's buffer small).
PIECE_BYTES = 1 << 20


class ColumnsError(ValueError):
    """A compact batch that cannot be stored; the message names the field and the fix."""


@dataclass
class MetricColumns:
    """Points of one metric key as three equally long columns.

    The columns are :mod:`array` arrays here and in the client; the service may hold NumPy
    arrays of the same types instead (read from its store without a copy).

    Attributes:
        key: the metric's name.
        steps: int64 steps.
        timestamps: int64 milliseconds since the epoch.
        values: float64 values (NaN and infinities allowed).
    """

    key: str
    steps: array = field(default_factory=lambda: array("q"))
    timestamps: array = field(default_factory=lambda: array("q"))
    values: array = field(default_factory=lambda: array("d"))

    def __len__(self) -> int:
        return len(self.values)

    def to_json(self) -> dict[str, Any]:
        """This key as one entry of a compact batch (non-finite values as strings)."""
        return batch_entry(self.key, self.steps.tolist(), self.values, self.timestamps.tolist())


def batch_entry(
    key: str, steps: list[int], values: Sequence[float], timestamps: list[int]
) -> dict[str, Any]:
    """One key's entry of a compact batch; values that are not finite become strings."""
    return {"key": key, "steps": steps, "values": json_values(values), "timestamps": timestamps}


def json_values(values: Sequence[float]) -> list[float | str]:
    """``values`` as a JSON-safe list: NaN and infinities become ``"NaN"``/``"Infinity"``.

    >>> json_values([1.0, float("nan"), float("-inf")])
    [1.0, 'NaN', '-Infinity']
    """
    out = values.tolist() if hasattr(values, "tolist") else list(values)  # array, NumPy
    total = sum(out)  # NaN or an infinity in it makes the sum non-finite
    if total - total == 0.0:  # finite sum: every value finite (an overflow only costs time)
        return out
    return [v if math.isfinite(v) else _as_text(v) for v in out]


def _as_text(value: float) -> str:
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def parse_metric_columns(body: Any, now_ms: int) -> list[MetricColumns]:
    """The :class:`MetricColumns` of a compact batch body, checked.

    Args:
        body: the decoded JSON ``{"metrics": [{key, steps, values, timestamps?}]}``.
        now_ms: the timestamp of points sent without one.

    Raises:
        ColumnsError: naming the key, the field and what to send instead.
    """
    if not isinstance(body, dict):
        raise ColumnsError('the body must be an object {"metrics": [...]}')
    unknown = set(body) - {"metrics"}
    if unknown:
        raise ColumnsError(
            f"unknown field(s): {', '.join(sorted(unknown))}; a compact batch holds only "
            '"metrics" (params and tags go to /runs/{id}/batch)'
        )
    items = body.get("metrics")
    if not isinstance(items, list):
        raise ColumnsError(
            'metrics must be a list of {"key", "steps", "values", "timestamps"?} objects'
        )
    out: list[MetricColumns] = []
    total = 0
    for i, item in enumerate(items):
        columns = _parse_item(item, i, now_ms)
        total += len(columns)
        if total > MAX_BATCH_POINTS:
            raise ColumnsError(
                f"a compact batch holds at most {MAX_BATCH_POINTS} points; this one has more: "
                "send them in several requests"
            )
        out.append(columns)
    return out


def _parse_item(item: Any, index: int, now_ms: int) -> MetricColumns:
    if not isinstance(item, dict):
        raise ColumnsError(f"metrics[{index}] must be an object {{key, steps, values}}")
    unknown = set(item) - {"key", "steps", "values", "timestamps"}
    if unknown:
        raise ColumnsError(
            f"metrics[{index}] has unknown field(s) {', '.join(sorted(unknown))}; use key, "
            "steps, values and timestamps"
        )
    key = item.get("key")
    if not isinstance(key, str) or not key:
        raise ColumnsError(f"metrics[{index}].key must be a non-empty string")
    raw_values, raw_steps = item.get("values"), item.get("steps")
    if not isinstance(raw_values, list) or not isinstance(raw_steps, list):
        raise ColumnsError(f"metric {key!r}: steps and values must be arrays of equal length")
    if len(raw_values) != len(raw_steps):
        raise ColumnsError(
            f"metric {key!r}: {len(raw_steps)} steps but {len(raw_values)} values; send one "
            "step per value"
        )
    steps = _int64s(raw_steps, key, "steps")
    raw_stamps = item.get("timestamps", now_ms)
    if isinstance(raw_stamps, list):
        if len(raw_stamps) != len(raw_values):
            raise ColumnsError(
                f"metric {key!r}: {len(raw_stamps)} timestamps for {len(raw_values)} values; "
                "send one per value, or one integer for all"
            )
        stamps = _int64s(raw_stamps, key, "timestamps")
    else:
        stamps = _int64s([raw_stamps], key, "timestamps") * len(raw_values)
    return MetricColumns(key, steps, stamps, _float64s(raw_values, key))


def _int64s(raw: list, key: str, name: str) -> array:
    if any(map(isinstance, raw, repeat(bool))):
        raise ColumnsError(f"metric {key!r}: {name} must be integers, not true/false")
    try:
        return array("q", raw)
    except (TypeError, OverflowError):
        pass
    for i, x in enumerate(raw):  # only to name the bad entry
        if not isinstance(x, int) or not -(2**63) <= x < 2**63:
            raise ColumnsError(
                f"metric {key!r}: {name}[{i}] = {x!r} is not a 64-bit integer"
                + ("; timestamps are integer milliseconds" if name == "timestamps" else "")
            ) from None
    raise ColumnsError(f"metric {key!r}: {name} must be 64-bit integers")  # pragma: no cover


def _float64s(raw: list, key: str) -> array:
    if any(map(isinstance, raw, repeat(bool))):
        raise ColumnsError(f"metric {key!r}: values must be numbers, not true/false")
    try:
        return array("d", raw)
    except TypeError:
        pass
    out = array("d")
    for i, x in enumerate(raw):  # strings for non-finite values (rare): the slow path
        if isinstance(x, str) and x in _FROM_TEXT:
            out.append(_FROM_TEXT[x])
        elif isinstance(x, int | float) and not isinstance(x, bool):
            out.append(float(x))
        else:
            raise ColumnsError(
                f"metric {key!r}: values[{i}] = {x!r} is not a number; send numbers, or "
                '"NaN", "Infinity", "-Infinity"'
            )
    return out


# -- the binary history (.npz) ---------------------------------------------------------------
def npy_header(typecode: str, count: int) -> bytes:
    """The ``.npy`` (version 1.0) header of a 1-d array of ``count`` items.

    Args:
        typecode: ``"q"`` (int64) or ``"d"`` (float64), as in :mod:`array`.
        count: the number of items.
    """
    descr = {"q": "i8", "d": "f8"}[typecode]
    text = f"{{'descr': '{_BYTE_ORDER}{descr}', 'fortran_order': False, 'shape': ({count},), }}"
    # magic (6) + version (2) + length (2) + header, padded with spaces to 64 bytes, then \n
    pad = -(10 + len(text) + 1) % 64
    header = (text + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def column_pieces(column: Any) -> Iterator[bytes]:
    """``column``'s ``.npy`` file: the header, then its data in pieces of ~1 MiB.

    ``column`` is an ``array("q")``/``array("d")`` or a 1-d int64/float64 NumPy array.
    """
    typecode = getattr(column, "typecode", None) or {"i": "q", "f": "d"}[column.dtype.kind]
    yield npy_header(typecode, len(column))
    per_piece = max(1, PIECE_BYTES // column.itemsize)
    for start in range(0, len(column), per_piece):
        yield column[start : start + per_piece].tobytes()


class _Sink(io.RawIOBase):
    """A write-only stream that keeps what was written until it is taken (for streaming)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def npz_members(columns: MetricColumns) -> Iterator[bytes]:
    """The ``.npz`` of one history, in pieces (stored, not compressed; zip64 for long ones).

    The archive holds ``step.npy``, ``timestamp.npy`` and ``value.npy``; concatenated, the
    pieces are a file that ``numpy.load`` and :func:`read_npz` open.
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, column in (
            ("step", columns.steps),
            ("timestamp", columns.timestamps),
            ("value", columns.values),
        ):
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                for piece in column_pieces(column):
                    member.write(piece)
                    if sink.parts:
                        yield sink.take()
            yield sink.take()
    yield sink.take()


def read_npy(data: bytes) -> array:
    """The 1-d int64 or float64 array of a ``.npy`` file's bytes.

    Raises:
        ValueError: for anything but a 1-d ``<i8``/``<f8`` (or big-endian) array.
    """
    if data[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy file")
    major = data[6]
    size_bytes = 2 if major == 1 else 4
    length = int.from_bytes(data[8 : 8 + size_bytes], "little")
    start = 8 + size_bytes
    header = data[start : start + length].decode("latin1")
    descr = header.split("'descr':")[1].split("'")[1]
    if descr[1:] not in ("i8", "f8") or "'fortran_order': False" not in header:
        raise ValueError(f"a .npy of {descr!r} is not a metric column")
    out = array("q" if descr[1:] == "i8" else "d")
    out.frombytes(data[start + length :])
    if descr[0] != _BYTE_ORDER and descr[0] in "<>":
        out.byteswap()
    return out


def read_npz(data: bytes, key: str = "") -> MetricColumns:
    """The :class:`MetricColumns` of a history ``.npz`` (from :func:`npz_members`)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return MetricColumns(
            key,
            read_npy(archive.read("step.npy")),
            read_npy(archive.read("timestamp.npy")),
            read_npy(archive.read("value.npy")),
        )
