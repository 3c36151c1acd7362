"""The server's own refusals, shared by the app, the holders and the writer's
client (library errors, ``svve_core.exceptions``, are mapped to statuses by
the app's exception handler)."""

from __future__ import annotations

from typing import Optional


class RequestError(Exception):
    """A request the server refuses, with its HTTP status (and, for failures
    of the collection writer, a name for the ``error`` field)."""

    def __init__(self, message: str, status: int = 400, error: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
