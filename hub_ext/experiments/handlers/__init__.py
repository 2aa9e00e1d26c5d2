"""API handlers of the experiments service, one module per resource."""

from .. import dashboard
from . import artifacts, columns, jobs, live, mlflow, openapi, projects, registry, runs, storage

default_handlers = [
    *projects.default_handlers,
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
