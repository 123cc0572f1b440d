"""The one error type the studio's parts raise for a request they refuse: an HTTP status and a sentence for the
person who sent it. The gateway answers every ``StudioError`` the same way (``deployments/errors.py``)."""

from __future__ import annotations


class StudioError(Exception):
    """A request the studio cannot carry out, with the HTTP status and the sentence the caller should see."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
