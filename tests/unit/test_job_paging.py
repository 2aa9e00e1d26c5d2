"""Job list page tokens: opaque keyset positions, refused with a 400 naming the fix."""

from __future__ import annotations

import base64
import json

import pytest

from hub_ext.experiments.jobs.paging import decode_job_token, encode_job_token
from hub_ext.experiments.store.errors import TrackingError

JOB = "0123456789abcdef" * 2


def b64(value: object) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize(
    ("created", "job_id"), [(0, JOB), (1_800_000_000_000, "f" * 32), (2**63 - 1, "0" * 32)]
)
def test_a_token_names_the_position_it_was_made_for(created, job_id):
    token = encode_job_token(created, job_id)
    assert decode_job_token(token) == (created, job_id)
    assert token.isascii() and "/" not in token and "+" not in token  # safe in a query


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!",
        "é",
        b64(b"\xff\xfe"),
        b64({"offset": 100}),  # a runs/projects token is not a jobs token
        b64([1, JOB]),
        b64("text"),
        b64({"created": 1}),
        b64({"id": JOB}),
        b64({"created": True, "id": JOB}),
        b64({"created": -1, "id": JOB}),
        b64({"created": 1.5, "id": JOB}),
        b64({"created": "1", "id": JOB}),
        b64({"created": 2**63, "id": JOB}),
        b64({"created": 1, "id": JOB.upper()}),
        b64({"created": 1, "id": JOB[:-1]}),
        b64({"created": 1, "id": "' OR 1=1 --" + "0" * 21}),
        b64({"created": 1, "id": 7}),
    ],
)
def test_a_token_this_service_did_not_make_is_a_400_naming_the_fix(token):
    with pytest.raises(TrackingError) as info:
        decode_job_token(token)
    assert info.value.http_status == 400
    assert info.value.code == "INVALID_PARAMETER_VALUE"
    assert "next_token" in info.value.message and "page_token" in info.value.message
