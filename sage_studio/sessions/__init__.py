"""Chat sessions: their API shapes and the SQLite store every gateway replica shares."""

from sage_studio.sessions.models import (
    CreateSessionRequest,
    Dialog,
    Message,
    RecalledDialog,
    RenameSessionRequest,
    Session,
    SessionSummary,
    TurnMessage,
)
from sage_studio.sessions.store import SessionNotFound, SessionStore

__all__ = [
    "CreateSessionRequest",
    "Dialog",
    "Message",
    "RecalledDialog",
    "RenameSessionRequest",
    "Session",
    "SessionNotFound",
    "SessionStore",
    "SessionSummary",
    "TurnMessage",
]
