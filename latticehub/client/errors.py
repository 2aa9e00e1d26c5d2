"""The one error the tracking client raises for an answer it cannot use."""

from __future__ import annotations

import json

#: Statuses after which the same request may succeed later (service restarting, proxy
#: hiccup, rate or job limit): 429 and the 5xx a proxy or a restarting service answers.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
#: ``code`` of an answer that is not what the API sends (not JSON, a damaged download).
BAD_ANSWER = "BAD_ANSWER"


class TrackingAPIError(Exception):
    """The service refused a request (HTTP >= 400), or its answer was unusable.

    A service that cannot be reached at all raises ``OSError`` instead (the active run
    spools its writes then).

    Attributes:
        status: the HTTP status of the answer.
        code: the service's ``error_code`` (``RESOURCE_DOES_NOT_EXIST``,
            ``JOB_LIMIT_EXCEEDED`` ...), ``HTTP_ERROR`` when the answer had none (a
            proxy's page), or :data:`BAD_ANSWER` for a body that is not what the API sends.
        message: the service's message (plain text).
    """

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message

    @property
    def transient(self) -> bool:
        """Whether the same request may succeed later (429 or a 5xx gateway/service error)."""
        return self.status in TRANSIENT_STATUSES

    @classmethod
    def from_answer(cls, status: int, payload: bytes, reason: str = "") -> TrackingAPIError:
        """The error of an answer >= 400 with body ``payload`` (JSON ``{error_code, message}``).

        >>> TrackingAPIError.from_answer(404, b'{"error_code": "NOPE", "message": "gone"}').code
        'NOPE'
        >>> TrackingAPIError.from_answer(502, b"<html>Bad Gateway</html>", "Bad Gateway").message
        'Bad Gateway'
        """
        try:
            err = json.loads(payload or b"{}")
        except ValueError:
            err = None
        if not isinstance(err, dict):
            err = {}
        message = err.get("message") or reason or f"HTTP {status}"
        return cls(status, str(err.get("error_code") or "HTTP_ERROR"), str(message))
