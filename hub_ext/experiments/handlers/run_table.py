"""The run table: a page of a run search as columns (``GET /api/v1/runs/columns``).

The same search as ``GET /api/v1/runs`` (``project``, ``filter``, ``order_by``, paging) with
pages of up to 100,000 runs, answered as one list per column instead of one object per run:
what ``runs_dataframe`` reads, at a small part of the cost.
"""

from __future__ import annotations

from ..serialize import number_json
from ..store.abstract import MAX_TABLE_ROWS
from .base import BaseHandler
from .runs import search_args
from .schemas import PAGING, PathItems, Query, obj, operation


class RunColumnsHandler(BaseHandler):
    """``/api/v1/runs/columns``."""

    def get(self) -> None:
        """``{"count", "columns": {name: [...]}, "_pagination": {"next_token"}}``."""
        ids, filters, order_by = search_args(self)
        token = self.get_argument("page_token", None)
        size = self.int_argument(
            "max_results", 10_000, minimum=1, maximum=MAX_TABLE_ROWS,
            hint="follow next_token for more",
        )  # fmt: skip
        table, nxt = self.store.run_table(
            project_ids=ids, filters=filters, order_by=order_by, page_token=token,
            max_results=size,
        )  # fmt: skip
        for name, column in table.items():
            if name.startswith("metrics."):
                table[name] = [None if v is None else number_json(v) for v in column]
        self.write_json(
            {"count": len(table["run_id"]), "columns": table, "_pagination": {"next_token": nxt}}
        )


default_handlers = [(r"/api/v1/runs/columns", RunColumnsHandler)]

#: OpenAPI path items of this module's routes, assembled by :mod:`.openapi`.
openapi_paths: PathItems = {
    "/api/v1/runs/columns": {
        "get": operation(
            "Search runs, answered as columns (the run table)",
            description=(
                "The search of GET /api/v1/runs with pages of up to "
                f"{MAX_TABLE_ROWS} runs: one list per column (run_id, name, user, status, "
                "start_time, end_time, params.<key>, tags.<key>, metrics.<key> with latest "
                "values), null where a run has no such value."
            ),
            query=(
                Query("project", "integer", "project id (repeatable)"),
                Query("filter", "string", "MLflow filter, e.g. metrics.loss < 0.5"),
                Query("order_by", "string", "e.g. metrics.loss DESC (repeatable)"),
                *[q for q in PAGING if q.name != "max_results"],
                Query(
                    "max_results",
                    {"type": "integer", "minimum": 1, "maximum": MAX_TABLE_ROWS},
                    f"runs per page (default 10000, at most {MAX_TABLE_ROWS})",
                ),
            ),
            returns=obj(
                {
                    "count": {"type": "integer", "minimum": 0},
                    "columns": {"type": "object", "additionalProperties": {"type": "array"}},
                    "_pagination": obj({"next_token": {"type": ["string", "null"]}}),
                },
                ("count", "columns", "_pagination"),
            ),
        )
    }
}
