"""Job credentials: a fresh Hub API token per job, bound by the service to that job's run.

The Hub token carries one scope, ``access:services!service=experiments``, and expires after the
job's time limit plus a margin; the service keeps only its sha256 with the run it may write
(``lh_job_tokens``) and revokes both when the job ends. The job reads it from its 0600
environment file, never from a command line.
"""

from __future__ import annotations

import abc
import hashlib
import secrets
from typing import Any
from urllib.parse import quote

import requests

JOB_TOKEN_SCOPES = ["access:services!service=experiments"]


def token_hash(token: str) -> str:
    """How the service remembers a token (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenMinter(abc.ABC):
    """Creates and revokes per-job Hub tokens."""

    @abc.abstractmethod
    def mint(self, user: str, expires_in_s: int, note: str) -> tuple[str, str]:
        """A new token for ``user``; returns ``(token, token_id)``."""

    @abc.abstractmethod
    def revoke(self, user: str, token_id: str) -> None:
        """Delete the token (a no-op if it is already gone)."""


class HubTokenMinter(TokenMinter):
    """Through the Hub API with the service's own token (its role needs the ``tokens`` scope)."""

    def __init__(self, api_url: str, service_token: str, timeout: float = 10):
        self.api_url = api_url.rstrip("/")
        self.headers = {"Authorization": f"token {service_token}"}
        self.timeout = timeout

    def mint(self, user: str, expires_in_s: int, note: str) -> tuple[str, str]:  # noqa: D102
        r = requests.post(
            f"{self.api_url}/users/{quote(user, safe='')}/tokens",
            json={"scopes": JOB_TOKEN_SCOPES, "expires_in": expires_in_s, "note": note},
            headers=self.headers,
            timeout=self.timeout,
        )
        if r.status_code >= 400:
            raise RuntimeError(
                f"the Hub refused a job token for {user}: {r.status_code} {r.text[:300]}"
            )
        body: dict[str, Any] = r.json()
        return body["token"], str(body["id"])

    def revoke(self, user: str, token_id: str) -> None:  # noqa: D102
        r = requests.delete(
            f"{self.api_url}/users/{quote(user, safe='')}/tokens/{quote(token_id, safe='')}",
            headers=self.headers,
            timeout=self.timeout,
        )
        if r.status_code not in (204, 404):
            raise RuntimeError(f"the Hub did not revoke job token {token_id}: {r.status_code}")


class LocalTokenMinter(TokenMinter):
    """Tokens the service alone knows (tests and a service run without a Hub).

    ``users`` maps token -> user model for a stand-in authenticator to consult.
    """

    def __init__(
        self, users: dict[str, dict] | None = None, groups: dict[str, list[str]] | None = None
    ):
        self.users = users if users is not None else {}
        self.groups = groups or {}

    def mint(self, user: str, expires_in_s: int, note: str) -> tuple[str, str]:  # noqa: D102
        token = "lhjob_" + secrets.token_urlsafe(24)
        self.users[token] = {
            "name": user,
            "kind": "user",
            "admin": False,
            "groups": self.groups.get(user, []),
        }
        return token, token_hash(token)[:16]

    def revoke(self, user: str, token_id: str) -> None:  # noqa: D102
        for token in [t for t in self.users if token_hash(t)[:16] == token_id]:
            del self.users[token]
