"""Job credentials: tokens the service issues itself, each bound to one job's run.

A job never holds a Hub token: the service makes a random token per job (``lhjob_`` and 32
random bytes), keeps only its sha256 with the run it may write and the project it may read
(``lh_job_tokens``), lets it expire after the job's time limit plus a margin, and revokes it
when the job ends. The Hub does not know these tokens, so a job token is worth nothing outside
this service, and the service's Hub role needs no ``tokens`` scope. The job reads its token
from its 0600 environment file, never from a command line.

A client may spell a token in any way the Hub accepts one (``token``/``bearer`` in any case,
any whitespace, ``?token=``); :func:`presented_tokens` finds every spelling, so that a job
token is always recognised as one and never passed on as something else.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping

#: Every job token starts with this, so that the service knows which tokens are its own.
JOB_TOKEN_PREFIX = "lhjob_"

# The Hub's own reading of the header: a scheme word, whitespace of any kind, the rest.
_AUTH_RE = re.compile(r"\s*(?:token|bearer)\s+(.+)", re.IGNORECASE | re.DOTALL)


def token_hash(token: str) -> str:
    """How the service remembers a token (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_job_token() -> str:
    """A fresh job token: the prefix and 32 random bytes, URL-safe."""
    return JOB_TOKEN_PREFIX + secrets.token_urlsafe(32)


def is_job_token(token: str) -> bool:
    """Whether ``token`` claims to be one of this service's job tokens."""
    return token.startswith(JOB_TOKEN_PREFIX)


def presented_tokens(authorization: str, query_tokens: Iterable[str]) -> list[str]:
    """Every token a request presents: the ``Authorization`` header's and ``?token=`` values.

    Args:
        authorization: the header's value ("" when absent), e.g. ``"Bearer lhjob_..."``.
        query_tokens: the values of the ``token`` query argument.

    Returns:
        The tokens, header first, without duplicates.
    """
    found: list[str] = []
    match = _AUTH_RE.match(authorization or "")
    if match and match.group(1).strip():
        found.append(match.group(1).strip())
    for value in query_tokens:
        value = value.strip()
        if value and value not in found:
            found.append(value)
    return found


def job_tokens_in(headers: Mapping[str, str], query_tokens: Iterable[str]) -> list[str]:
    """The presented tokens that claim to be job tokens (see :func:`presented_tokens`)."""
    return [
        t
        for t in presented_tokens(headers.get("Authorization", ""), query_tokens)
        if is_job_token(t)
    ]
