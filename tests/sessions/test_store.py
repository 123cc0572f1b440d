"""SessionStore on a real SQLite file: lifecycle, titles, ordering, cleanup, persistence and concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from sage_studio.sessions import SessionNotFound, SessionStore
from sage_studio.sessions.models import DEFAULT_TITLE, RecalledDialog, TurnMessage


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += 0.001  # strictly increasing, like real time between calls
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock) -> SessionStore:
    s = SessionStore(tmp_path / "sessions.db", clock=clock)
    yield s
    s.close()


def test_database_runs_in_wal_mode(store):
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_create_get_and_auto_title(store):
    created = store.create()
    assert created.title == DEFAULT_TITLE and created.messages == [] and created.message_count == 0
    first = "  How do   I fine-tune SmolLM2 on my own support tickets with LoRA adapters?"
    store.append_dialog(created.id, first, "Like so.")
    store.append_dialog(created.id, "Second question", "Second answer")
    session = store.get(created.id)
    # One line, cut on a word boundary, from the first user message only.
    assert session.title == "How do I fine-tune SmolLM2 on my own support tickets with…"
    assert [(m.role, m.content) for m in session.messages] == [
        ("user", first),
        ("assistant", "Like so."),
        ("user", "Second question"),
        ("assistant", "Second answer"),
    ]
    assert session.message_count == 4
    assert session.messages[0].timestamp <= session.messages[2].timestamp
    assert session.created_at < session.last_active


def test_explicit_and_renamed_titles_are_kept(store):
    titled = store.create("Trip planning")
    store.append_dialog(titled.id, "Where should I go?", "Lyon.")
    assert store.get(titled.id).title == "Trip planning"
    untitled = store.create()
    store.rename(untitled.id, "My name")
    store.append_dialog(untitled.id, "first message", "reply")
    assert store.get(untitled.id).title == "My name"


def test_list_is_sorted_by_last_activity(store, clock):
    a, b, c = store.create("a"), store.create("b"), store.create("c")
    assert [s.id for s in store.list_sessions()] == [c.id, b.id, a.id]
    clock.advance(5)
    store.append_dialog(a.id, "hi", "hello")
    clock.advance(5)
    store.rename(b.id, "renamed b")
    listed = store.list_sessions()
    assert [s.id for s in listed] == [b.id, a.id, c.id]
    assert {s.id: s.message_count for s in listed} == {a.id: 2, b.id: 0, c.id: 0}


def test_clear_keeps_the_session_and_delete_removes_it(store):
    s = store.create()
    store.append_dialog(s.id, "keep me?", "no")
    cleared = store.clear(s.id)
    assert cleared.message_count == 0 and store.get(s.id).messages == []
    assert cleared.title == "keep me?"
    store.delete(s.id)
    assert not store.exists(s.id)
    with pytest.raises(SessionNotFound):
        store.get(s.id)
    with pytest.raises(KeyError):  # the chat route's contract: KeyError for an unknown session
        store.dialogs(s.id)
    for call in (store.clear, store.delete, lambda sid: store.rename(sid, "x"),
                 lambda sid: store.append_dialog(sid, "u", "a")):
        with pytest.raises(SessionNotFound):
            call(s.id)


def test_cleanup_removes_only_idle_sessions(store, clock):
    idle = store.create("idle")
    store.append_dialog(idle.id, "old", "old reply")
    clock.advance(45 * 60)
    busy = store.create("busy")
    revived = store.create("revived")
    store.append_dialog(revived.id, "new", "new reply")
    assert store.cleanup(30 * 60) == [idle.id]
    assert {s.id for s in store.list_sessions()} == {busy.id, revived.id}
    assert store.get(revived.id).message_count == 2
    with sqlite3.connect(store.path) as db:  # the idle session's messages went with it
        assert db.execute("SELECT COUNT(*) FROM messages WHERE session_id = ?", (idle.id,)).fetchone()[0] == 0
    with pytest.raises(ValueError):
        store.cleanup(-1)


def test_dialogs_pair_turns_and_recall_is_stored(store):
    s = store.create()
    recalled = [RecalledDialog(dialog=0, user="u0", assistant="a0", score=0.9, reason="cosine similarity 0.90")]
    store.append_dialog(s.id, "u0", "a0")
    store.append_dialog(s.id, "u1", "a1", recall=recalled)
    dialogs = store.dialogs(s.id)
    assert [(d.index, d.user, d.assistant) for d in dialogs] == [(0, "u0", "a0"), (1, "u1", "a1")]
    assert dialogs[0].key < dialogs[1].key
    messages = store.get(s.id).messages
    assert messages[2].recall == recalled and messages[0].recall is None


def test_message_ids_are_not_reused_after_deletes(store):
    # Memory caches are keyed by message id: a cleared session's new dialogs must get new ids.
    s = store.create()
    store.append_dialog(s.id, "u", "a")
    old = store.dialogs(s.id)[0].key
    store.clear(s.id)
    store.append_dialog(s.id, "u", "a")
    assert store.dialogs(s.id)[0].key > old


def test_sessions_survive_reopening_the_database(tmp_path):
    first = SessionStore(tmp_path / "sessions.db")
    s = first.create()
    store_turns = [("what is Ray Serve?", "A model serving library."), ("and vLLM?", "An inference engine.")]
    for user, assistant in store_turns:
        first.append_dialog(s.id, user, assistant)
    first.close()
    second = SessionStore(tmp_path / "sessions.db")
    again = second.get(s.id)
    assert again.title == "what is Ray Serve?"
    assert [m.content for m in again.messages] == [t for pair in store_turns for t in pair]
    second.close()


def test_concurrent_writers_from_two_stores_lose_nothing(tmp_path):
    """50 dialogs into 10 sessions from 8 threads over two stores (two replicas): each stored exactly once."""
    stores = [SessionStore(tmp_path / "sessions.db", busy_timeout_s=60) for _ in range(2)]
    sessions = [stores[0].create().id for _ in range(10)]
    jobs = [(i, sessions[i % 10]) for i in range(50)]

    def write(job: tuple[int, str]) -> None:
        i, session_id = job
        stores[i % 2].append_dialog(session_id, f"question {i}", f"answer {i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, jobs))
    for session_id in sessions:
        dialogs = stores[1].dialogs(session_id)
        assert len(dialogs) == 5
        # Pairs intact: each question sits with its own answer, and no dialog is stored twice.
        assert all(d.assistant == d.user.replace("question", "answer") for d in dialogs)
        assert len({d.user for d in dialogs}) == 5
    assert sum(s.message_count for s in stores[0].list_sessions()) == 100
    for s in stores:
        s.close()


def test_constructor_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        SessionStore(tmp_path / "x.db", busy_timeout_s=0)


def test_tool_rounds_are_stored_and_memory_pairs_the_question_with_the_final_answer(store):
    s = store.create()
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    store.append_turn(s.id, [TurnMessage(role="user", content="Weather in Paris?"),
                             TurnMessage(role="assistant", tool_calls=[call])])
    store.append_turn(s.id, [TurnMessage(role="tool", content="sunny", tool_call_id="call_1"),
                             TurnMessage(role="assistant", content="It is sunny in Paris.")])
    messages = store.get(s.id).messages
    assert [m.openai() for m in messages] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "It is sunny in Paris."},
    ]
    assert [(d.user, d.assistant) for d in store.dialogs(s.id)] == [("Weather in Paris?", "It is sunny in Paris.")]
    assert store.get(s.id).title == "Weather in Paris?"


def test_a_database_from_before_tool_turns_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the tables as the studio made them before tool turns were stored
        db.executescript("""
            CREATE TABLE sessions (id VARCHAR(64) PRIMARY KEY, title VARCHAR(200), title_auto BOOLEAN,
                                   created_at FLOAT, last_active FLOAT);
            CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id VARCHAR(64) REFERENCES sessions(id)
                                   ON DELETE CASCADE, role VARCHAR(16), content TEXT, created_at FLOAT, recall TEXT);
            INSERT INTO sessions VALUES ('old', 'Kept', 0, 1.0, 2.0);
            INSERT INTO messages (session_id, role, content, created_at) VALUES ('old', 'user', 'hi', 1.5);
        """)
    store = SessionStore(path)
    try:
        assert [(m.role, m.content, m.tool_calls) for m in store.get("old").messages] == [("user", "hi", None)]
        store.append_turn("old", [TurnMessage(role="tool", content="42", tool_call_id="c", request_id="req-7")])
        assert store.get("old").messages[-1].tool_call_id == "c" and store.get("old").title == "Kept"
        # The request id column came with the upgrade too, and stays out of the OpenAI shape.
        assert store.get("old").messages[-1].request_id == "req-7"
        assert "request_id" not in store.get("old").messages[-1].openai()
        store.append_turn("old", [TurnMessage(role="assistant", content="ok")])
        assert store.rate("old", 2, 1, "good").rating == 1  # the feedback columns were added in place as well
    finally:
        store.close()


def test_ratings_are_stored_on_assistant_replies_and_become_chat_rows(store):
    from sage_studio.errors import StudioError
    from sage_studio.sessions.feedback import feedback_rows

    s = store.create()
    for q, a in (("Capital of France?", "Paris."), ("And of Spain?", "Lisbon."), ("Of Italy?", "Rome.")):
        store.append_dialog(s.id, q, a)
    assert store.rate(s.id, 1, 1).rating == 1
    store.rate(s.id, 3, -1, "wrong country")
    store.rate(s.id, 5, -1)
    store.rate(s.id, 5, 1, "right")  # a second rating replaces the first
    got = store.get(s.id).messages
    assert [(m.rating, m.comment) for m in got] == [
        (None, None), (1, None), (None, None), (-1, "wrong country"), (None, None), (1, "right")]
    with pytest.raises(StudioError) as err:
        store.rate(s.id, 0, 1)
    assert err.value.status == 400 and "user message" in err.value.message
    with pytest.raises(StudioError) as err:
        store.rate(s.id, 6, 1)
    assert err.value.status == 404 and "has 6 message(s)" in err.value.message
    liked = feedback_rows([store.get(s.id)], 1)
    assert liked == [
        {"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]},
        {"messages": [{"role": "user", "content": "Of Italy?"}, {"role": "assistant", "content": "Rome."}]}]
    assert len(feedback_rows([store.get(s.id)], -1)) == 3
    assert store.get(s.id).messages[1].openai() == {"role": "assistant", "content": "Paris."}  # not sent back
