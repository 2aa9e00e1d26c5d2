"""The runs of a project and a metric's history as pandas DataFrames (pandas imported lazily)."""

from __future__ import annotations

from typing import Any

from .api import TrackingClient


def runs_dataframe(
    project: str | int,
    filter: str = "",
    order_by: list[str] | None = None,
    client: TrackingClient | None = None,
) -> Any:
    """The runs of a project as a pandas DataFrame, one row per run.

    Columns: ``run_id``, ``name``, ``user``, ``status``, ``start_time``, ``end_time``
    (timezone-aware UTC pandas timestamps, as the mlflow client's; ``NaT`` while running),
    ``params.<key>``, ``metrics.<key>`` (latest value) and ``tags.<key>``. Read as columns
    (``GET /runs/columns``, pages of 100,000 runs): 100,000 runs take about a second.
    """
    import pandas as pd

    client = client or TrackingClient()
    project_id = project if isinstance(project, int) else client.project(project)["id"]
    table = client.run_table(project_id, filter=filter, order_by=order_by)
    frame = pd.DataFrame(table)
    for name in ("start_time", "end_time"):
        frame[name] = pd.to_datetime(frame[name], unit="ms", utc=True)
    for name in frame.columns:
        if name.startswith("metrics."):  # "NaN"/"Infinity" strings too
            frame[name] = pd.to_numeric(frame[name].map(_number), errors="coerce")
    return frame


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def metric_history(run_id: str, key: str, client: TrackingClient | None = None) -> Any:
    """A metric's history as a DataFrame with ``step``, ``timestamp`` (UTC), ``value``.

    Read in one binary request (``.npz``) and wrapped without copying the columns point by
    point: a million points take well under a second.
    """
    import numpy as np
    import pandas as pd

    client = client or TrackingClient()
    columns = client.metric_columns(run_id, key)
    return pd.DataFrame(
        {
            "step": np.frombuffer(columns.steps, dtype=np.int64),
            "timestamp": pd.to_datetime(
                np.frombuffer(columns.timestamps, np.int64), unit="ms", utc=True
            ),
            "value": np.frombuffer(columns.values, dtype=np.float64),
        }
    )
