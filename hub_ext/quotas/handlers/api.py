"""The JSON side of every API handler: ``{"status", "message"}`` errors, paged lists."""

from __future__ import annotations

import json
from typing import Any

from .base import QuotasHandler


class APIHandler(QuotasHandler):
    """A JSON API handler (token or cookie; HubOAuth demands XSRF for cookie writes)."""

    def write_json(self, data: Any, status: int = 200) -> None:
        """Send ``data`` as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, allow_nan=False))

    def write_items(self, items: list[Any], **extra: Any) -> None:
        """A list in JupyterHub's ``{"items", "_pagination"}`` envelope (one page: all)."""
        pagination = {"offset": 0, "limit": len(items), "total": len(items), "next": None}
        self.write_json({"items": items, "_pagination": pagination, **extra})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as ``{"status": <code>, "message": <text>}``."""
        self.set_header("Content-Type", "application/json")
        body = {"status": status_code, "message": self.error_message(status_code, kwargs)}
        self.finish(json.dumps(body))
