"""API handlers of the experiments service, one module per resource."""

from .. import dashboard
from . import (
    artifacts,
    columns,
    jobs,
    live,
    mlflow,
    openapi,
    projects,
    registry,
    run_table,
    runs,
    storage,
)

default_handlers = [
    *projects.default_handlers,
    *run_table.default_handlers,  # before runs: /runs/columns is not a run id
    *runs.default_handlers,
    *columns.default_handlers,
    *jobs.default_handlers,
    *artifacts.default_handlers,
    *storage.default_handlers,
    *registry.default_handlers,
    *live.default_handlers,
    *openapi.default_handlers,
    *mlflow.default_handlers,
    *dashboard.default_handlers,
]
