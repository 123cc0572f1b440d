"""Chat sessions in an embedded SQLite database (SQLAlchemy 2): the source of truth for every gateway replica.

SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout, and every write is one
``BEGIN IMMEDIATE`` transaction: it takes the write lock up front, so concurrent writers from several threads or
several replica processes queue on the busy timeout instead of failing with "database is locked" half-way.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    Boolean, Engine, Float, ForeignKey, Integer, String, Text, create_engine, delete, event, func, inspect, select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session as DbSession, mapped_column

from sage_studio.errors import StudioError
from sage_studio.sessions.models import (
    DEFAULT_TITLE,
    Dialog,
    Message,
    RecalledDialog,
    Session,
    SessionSummary,
    TurnMessage,
    auto_title,
)


class SessionNotFound(KeyError):
    """No session has this id (a ``KeyError``, so callers may catch either)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        return f"Session '{self.session_id}' does not exist."


class _Base(DeclarativeBase):
    pass


class _SessionRow(_Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    # True until the user names the session: then the first user message gives the title.
    title_auto: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float)
    last_active: Mapped[float] = mapped_column(Float, index=True)


class _MessageRow(_Base):
    __tablename__ = "messages"
    # AUTOINCREMENT: ids are never reused after deletes, so memory caches keyed by message id stay valid.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    recall: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of RecalledDialog
    tool_calls: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list, OpenAI's shape
    tool_call_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the HTTP request that stored it
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)  # assistant turns: 1 or -1
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)


def _add_missing_columns(engine: Engine) -> None:
    """Bring a database made by an older studio up to the current tables.

    ``create_all`` makes missing tables but never alters existing ones. New columns are always nullable, so adding
    them in place keeps every stored session (a migration framework would be more machinery than this needs).
    """
    with engine.begin() as conn:  # one write transaction: two processes starting at once add a column once
        existing = inspect(conn)
        for table in _Base.metadata.sorted_tables:
            have = {c["name"] for c in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have:
                    kind = column.type.compile(engine.dialect)
                    conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class SessionStore:
    """Create, list, read, rename, clear, delete and clean up sessions; append dialogs atomically.

    Thread-safe and multi-process-safe: each call opens its own short transaction. Methods are blocking; async
    callers run them in a worker thread.
    """

    def __init__(self, path: Path | str, busy_timeout_s: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        if busy_timeout_s <= 0:
            raise ValueError("busy_timeout_s must be positive")
        self.path = Path(path)
        self._clock = clock  # seconds since the epoch; tests pass a fake one to age sessions
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._engine = create_engine(
            f"sqlite:///{self.path}",
            connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
        )
        busy_ms = int(busy_timeout_s * 1000)

        @event.listens_for(self._engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:
            # Hand transaction control to SQLAlchemy's "begin" hook below (pysqlite's own BEGIN is deferred).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            for pragma in ("journal_mode=WAL", f"busy_timeout={busy_ms}", "foreign_keys=ON", "synchronous=NORMAL"):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

        @event.listens_for(self._engine, "begin")
        def _on_begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

        self._writer = self._engine.execution_options(write=True)
        _Base.metadata.create_all(self._writer)
        _add_missing_columns(self._writer)

    def close(self) -> None:
        """Release the connection pool (the database file stays)."""
        self._engine.dispose()

    @contextmanager
    def _read(self) -> Iterator[DbSession]:
        with DbSession(self._engine, expire_on_commit=False) as db, db.begin():
            yield db

    @contextmanager
    def _write(self) -> Iterator[DbSession]:
        with DbSession(self._writer, expire_on_commit=False) as db, db.begin():
            yield db

    @staticmethod
    def _row(db: DbSession, session_id: str) -> _SessionRow:
        row = db.get(_SessionRow, session_id)
        if row is None:
            raise SessionNotFound(session_id)
        return row

    @staticmethod
    def _summary(row: _SessionRow, count: int) -> SessionSummary:
        return SessionSummary(
            id=row.id,
            title=row.title,
            created_at=_utc(row.created_at),
            last_active=_utc(row.last_active),
            message_count=count,
        )

    def create(self, title: str | None = None) -> Session:
        """A new empty session; without a title, its first user message will name it."""
        now = self._clock()
        row = _SessionRow(
            id=str(uuid.uuid4()),
            title=title or DEFAULT_TITLE,
            title_auto=title is None,
            created_at=now,
            last_active=now,
        )
        with self._write() as db:
            db.add(row)
        return Session(**self._summary(row, 0).model_dump(), messages=[])

    def list_sessions(self) -> list[SessionSummary]:
        """All sessions, most recently active first."""
        counts = (
            select(_MessageRow.session_id, func.count(_MessageRow.id).label("n"))
            .group_by(_MessageRow.session_id)
            .subquery()
        )
        query = (
            select(_SessionRow, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.session_id == _SessionRow.id)
            .order_by(_SessionRow.last_active.desc(), _SessionRow.created_at.desc())
        )
        with self._read() as db:
            return [self._summary(row, n) for row, n in db.execute(query).all()]

    def get(self, session_id: str) -> Session:
        """One session with its messages; ``SessionNotFound`` if there is none."""
        with self._read() as db:
            row = self._row(db, session_id)
            messages = db.scalars(
                select(_MessageRow).where(_MessageRow.session_id == session_id).order_by(_MessageRow.id)
            ).all()
        return Session(
            **self._summary(row, len(messages)).model_dump(),
            messages=[
                Message(
                    role=m.role,
                    content=m.content,
                    tool_calls=None if m.tool_calls is None else json.loads(m.tool_calls),
                    tool_call_id=m.tool_call_id,
                    request_id=m.request_id,
                    timestamp=_utc(m.created_at),
                    recall=None if m.recall is None else [RecalledDialog(**r) for r in json.loads(m.recall)],
                    rating=m.rating,
                    comment=m.comment,
                )
                for m in messages
            ],
        )

    def exists(self, session_id: str) -> bool:
        with self._read() as db:
            return db.get(_SessionRow, session_id) is not None

    def rename(self, session_id: str, title: str) -> SessionSummary:
        """Set the title; the session is no longer auto-titled."""
        with self._write() as db:
            row = self._row(db, session_id)
            row.title, row.title_auto, row.last_active = title, False, self._clock()
            count = db.scalar(select(func.count(_MessageRow.id)).where(_MessageRow.session_id == session_id))
        return self._summary(row, count or 0)

    def clear(self, session_id: str) -> SessionSummary:
        """Delete the messages, keep the session (and its title)."""
        with self._write() as db:
            row = self._row(db, session_id)
            db.execute(delete(_MessageRow).where(_MessageRow.session_id == session_id))
            row.last_active = self._clock()
        return self._summary(row, 0)

    def delete(self, session_id: str) -> None:
        """Delete the session and its messages."""
        with self._write() as db:
            db.delete(self._row(db, session_id))

    def cleanup(self, max_idle_s: float) -> list[str]:
        """Delete sessions idle for more than ``max_idle_s`` seconds; returns their ids."""
        if max_idle_s < 0:
            raise ValueError("max_idle_s must not be negative")
        cutoff = self._clock() - max_idle_s
        with self._write() as db:
            ids = list(db.scalars(select(_SessionRow.id).where(_SessionRow.last_active < cutoff)))
            if ids:
                # Message rows go with them through ON DELETE CASCADE.
                db.execute(delete(_SessionRow).where(_SessionRow.id.in_(ids)))
        return ids

    def append_dialog(
        self,
        session_id: str,
        user_content: str,
        assistant_content: str,
        recall: list[RecalledDialog] | None = None,
    ) -> None:
        """Store a user turn and the assistant's reply in one transaction; auto-title on the first one."""
        self.append_turn(session_id, [TurnMessage(role="user", content=user_content),
                                      TurnMessage(role="assistant", content=assistant_content)], recall)

    def append_turn(
        self, session_id: str, messages: list[TurnMessage], recall: list[RecalledDialog] | None = None
    ) -> None:
        """Store what one chat request added (its user or tool messages, then the reply) in one transaction.

        ``recall`` goes with the user message; the first user message of a session gives its auto-title.
        """
        with self._write() as db:
            row = self._row(db, session_id)
            now = self._clock()
            first_user = next((m for m in messages if m.role == "user"), None)
            if row.title_auto and first_user is not None:
                has_user_turn = db.scalar(
                    select(_MessageRow.id)
                    .where(_MessageRow.session_id == session_id, _MessageRow.role == "user")
                    .limit(1)
                )
                if has_user_turn is None:
                    row.title = auto_title(first_user.content)
            recall_json = json.dumps([r.model_dump() for r in recall]) if recall else None
            for message in messages:
                db.add(_MessageRow(
                    session_id=session_id, role=message.role, content=message.content, created_at=now,
                    recall=recall_json if message is first_user else None,
                    tool_calls=None if message.tool_calls is None else json.dumps(message.tool_calls),
                    tool_call_id=message.tool_call_id, request_id=message.request_id,
                ))
                db.flush()  # ids follow the order of the turn, so pairing by id order is exact
            row.last_active = now

    def rate(self, session_id: str, message_index: int, rating: int, comment: str | None = None) -> Message:
        """Store the user's rating of the assistant message at ``message_index`` (0 = the session's first message);
        ``StudioError`` 404 for an index the session does not have, 400 for a message that is not the assistant's."""
        with self._write() as db:
            self._row(db, session_id)
            rows = db.scalars(select(_MessageRow).where(_MessageRow.session_id == session_id)
                              .order_by(_MessageRow.id)).all()
            if not 0 <= message_index < len(rows):
                raise StudioError(404, f"Session '{session_id}' has {len(rows)} message(s): there is no message "
                                       f"{message_index} (0 is the first).")
            row = rows[message_index]
            if row.role != "assistant":
                raise StudioError(400, f"Message {message_index} is a {row.role} message: only the assistant's "
                                       "replies take feedback.")
            row.rating, row.comment = rating, comment
        return self.get(session_id).messages[message_index]

    def dialogs(self, session_id: str) -> list[Dialog]:
        """The session's dialogs (user turn + the assistant's answer to it), oldest first."""
        with self._read() as db:
            self._row(db, session_id)
            rows = db.execute(
                select(_MessageRow.id, _MessageRow.role, _MessageRow.content, _MessageRow.tool_calls)
                .where(_MessageRow.session_id == session_id)
                .order_by(_MessageRow.id)
            ).all()
        dialogs: list[Dialog] = []
        pending: tuple[int, str] | None = None
        for msg_id, role, content, tool_calls in rows:
            if role == "user":
                pending = (msg_id, content)
            # A reply that calls tools is not the answer yet: the dialog ends with the reply that follows the results.
            elif role == "assistant" and pending is not None and tool_calls is None:
                dialogs.append(Dialog(index=len(dialogs), key=pending[0], user=pending[1], assistant=content))
                pending = None
        return dialogs

    def session_ids(self) -> list[str]:
        with self._read() as db:
            return list(db.scalars(select(_SessionRow.id)))
