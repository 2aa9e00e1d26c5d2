"""Coded domain errors of the tracking store, mapped to HTTP once in the service."""

from __future__ import annotations

# MLflow's error codes, which its client understands, and the HTTP status of each
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
PERMISSION_DENIED = "PERMISSION_DENIED"
INVALID_STATE = "INVALID_STATE"
RESOURCE_LIMIT_EXCEEDED = "RESOURCE_LIMIT_EXCEEDED"
BAD_REQUEST = "BAD_REQUEST"
UNAUTHENTICATED = "UNAUTHENTICATED"
INTERNAL_ERROR = "INTERNAL_ERROR"
JOB_LIMIT_EXCEEDED = "JOB_LIMIT_EXCEEDED"
CONFLICT = "CONFLICT"
EXECUTOR_UNAVAILABLE = "EXECUTOR_UNAVAILABLE"
#: too many requests of one kind held open at once (live streams per user)
REQUEST_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
#: an upload would take its group's artifact storage past the cap (``artifact_quota``)
STORAGE_QUOTA_EXCEEDED = "STORAGE_QUOTA_EXCEEDED"

HTTP_STATUS = {
    INVALID_PARAMETER_VALUE: 400,
    BAD_REQUEST: 400,
    INVALID_STATE: 400,
    RESOURCE_LIMIT_EXCEEDED: 400,
    UNAUTHENTICATED: 401,
    PERMISSION_DENIED: 403,
    RESOURCE_DOES_NOT_EXIST: 404,
    RESOURCE_ALREADY_EXISTS: 400,
    INTERNAL_ERROR: 500,
    JOB_LIMIT_EXCEEDED: 429,
    CONFLICT: 409,
    EXECUTOR_UNAVAILABLE: 503,
    REQUEST_LIMIT_EXCEEDED: 429,
    STORAGE_QUOTA_EXCEEDED: 413,
}


class TrackingError(Exception):
    """A refused store or API operation.

    Attributes:
        code: an MLflow-compatible error code (``RESOURCE_DOES_NOT_EXIST`` ...).
        message: what went wrong and how to fix it.
    """

    def __init__(self, message: str, code: str = INVALID_PARAMETER_VALUE):
        super().__init__(message)
        self.message = message
        self.code = code

    @property
    def http_status(self) -> int:
        """The HTTP status for this error."""
        return HTTP_STATUS.get(self.code, 400)


def not_found(what: str) -> TrackingError:
    """A 404 error for ``what`` (also used for things the caller may not see)."""
    return TrackingError(f"{what} does not exist", RESOURCE_DOES_NOT_EXIST)


def invalid(message: str) -> TrackingError:
    """A 400 error for a bad value."""
    return TrackingError(message, INVALID_PARAMETER_VALUE)


def name_taken(name: str, *, group: str | None, owner: str) -> TrackingError:
    """RESOURCE_ALREADY_EXISTS for a project name already used where the project would go.

    Names are unique per group (and per owner among private projects), so the message
    speaks only of a namespace the caller writes to.
    """
    where = f"in group {group!r}" if group is not None else f"among {owner}'s private projects"
    return TrackingError(
        f"Experiment(name={name}) already exists {where}: choose another name, or use that project",
        RESOURCE_ALREADY_EXISTS,
    )
