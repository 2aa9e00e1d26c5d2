"""GET one JSON answer of the experiments API with this service's own Hub token.

The quotas service reads each group's jobs and artifact storage this way (never from the
experiments service's database); a failure becomes the caller's exception type, with the
experiments service's own message where it sent one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

#: Seconds a page waits for the experiments service at most.
TIMEOUT_S = 5.0


async def get_json(url: str, token: str, error: type[Exception]) -> dict[str, Any]:
    """The JSON object at ``url``.

    Raises:
        error: ``the experiments service answered <status>: <its message>``, or ``could not
            be read: <why>`` when it did not answer with JSON.
    """
    request = HTTPRequest(
        url,
        headers={"Authorization": f"token {token}"},
        request_timeout=TIMEOUT_S,
        connect_timeout=TIMEOUT_S,
    )
    try:
        response = await AsyncHTTPClient().fetch(request)
        answer = json.loads(response.body)
    except HTTPClientError as e:
        detail = ""
        if e.response is not None and e.response.body:
            try:
                detail = f": {json.loads(e.response.body).get('message', '')}"
            except (ValueError, AttributeError):
                pass
        raise error(f"the experiments service answered {e.code}{detail}") from e
    except (OSError, ValueError) as e:
        raise error(f"the experiments service could not be read: {e.__class__.__name__}") from e
    if not isinstance(answer, dict):
        raise error("the experiments service could not be read: not a JSON object")
    return answer


class ExperimentsReader:
    """A reader of one experiments API listing (the base of the job and storage sources).

    Args:
        api_url: the experiments service's base URL, e.g.
            ``http://127.0.0.1:10101/services/experiments``.
        token: this service's Hub API token.
    """

    #: the exception a failed read raises (the reader's own "unavailable" type)
    unavailable: type[Exception] = OSError

    def __init__(self, api_url: str, token: str):
        self.api_url = api_url.rstrip("/")
        self.token = token

    async def get_items(self, path: str, query: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """The answer at ``path?query``, a JSON object with an ``items`` list.

        Raises:
            unavailable: when the answer cannot be read or has no ``items``.
        """
        answer = await get_json(
            f"{self.api_url}{path}?{urlencode(query)}", self.token, self.unavailable
        )
        if not isinstance(answer.get("items"), list):
            raise self.unavailable("the experiments service could not be read: no items")
        return answer
