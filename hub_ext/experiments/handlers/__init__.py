"""API handlers of the experiments service, one module per resource."""

from . import artifacts, jobs, mlflow, openapi, projects, runs

default_handlers = [
    *projects.default_handlers,
    *runs.default_handlers,
    *jobs.default_handlers,
    *artifacts.default_handlers,
    *openapi.default_handlers,
    *mlflow.default_handlers,
]
