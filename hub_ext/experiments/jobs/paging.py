"""Page tokens of the job list: a keyset position, not an offset (pure: no I/O).

Jobs are listed newest first (``created`` descending, then ``id``). A token names the last
job of a page, ``(created, id)``, and the next page starts after it, so jobs submitted while a
client pages (they sort first) neither shift nor repeat what it has already seen. Tokens are
opaque to clients (URL-safe base64 of JSON), like those of runs and projects, and a token this
service did not make is refused with the same 400 (``INVALID_PARAMETER_VALUE``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from ..store.errors import TrackingError, invalid

#: A job id (as ``/api/v1/jobs/{job_id}`` routes it).
_JOB_ID = re.compile(r"[0-9a-f]{32}")

#: The largest ``created`` a database stores (64-bit signed milliseconds).
_MAX_CREATED = 2**63 - 1
#: The position a token names: the last job of the previous page.
Position = tuple[int, str]


def encode_job_token(created: int, job_id: str) -> str:
    """The token of the page that follows the job ``(created, job_id)``."""
    raw = json.dumps({"created": created, "id": job_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_job_token(token: str) -> Position:
    """The ``(created, id)`` position a token names.

    Raises:
        TrackingError: 400 ``INVALID_PARAMETER_VALUE`` for a token this service did not make
            (as for runs and projects), naming the fix.
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        created, job_id = data["created"], data["id"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeEncodeError):
        raise _bad_token(token) from None
    if (
        isinstance(created, bool)
        or not isinstance(created, int)
        or not 0 <= created <= _MAX_CREATED
        or not isinstance(job_id, str)
        or not _JOB_ID.fullmatch(job_id)
    ):
        raise _bad_token(token)
    return created, job_id


def _bad_token(token: str) -> TrackingError:
    return invalid(
        f"Invalid page token {token[:40]!r}: pass the _pagination.next_token of the previous "
        "page as page_token, or leave page_token out to start from the newest job"
    )
