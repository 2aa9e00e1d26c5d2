"""The JSON side of every API handler: ``{"status", "error_code", "message"}`` errors, lists."""

from __future__ import annotations

from typing import Any

from .base import QuotasHandler


class APIHandler(QuotasHandler):
    """A JSON API handler (token or cookie; HubOAuth demands XSRF for cookie writes)."""

    def write_items(self, items: list[Any], **extra: Any) -> None:
        """A list in JupyterHub's ``{"items", "_pagination"}`` envelope (one page: all)."""
        pagination = {"offset": 0, "limit": len(items), "total": len(items), "next": None}
        self.write_json({"items": items, "_pagination": pagination, **extra})
