"""Memory backends on real sessions: what each one puts into the prompt of a later question."""

from __future__ import annotations

import asyncio

import pytest

from sage_studio.memory.chat_memory import RECALL_HEADER


def build(memory, session_id: str, question: str, system: str | None = None) -> list[dict]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return asyncio.run(memory.build_messages(session_id, messages))


def prompt_text(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages)


def test_short_term_replays_the_window_and_forgets_older_dialogs(make_memory, story):
    memory = make_memory("short_term")
    session_id = story.long_session(memory)
    messages = build(memory, session_id, story.KEYWORD_QUESTION)
    expected_window = [text for pair in story.FILLER[-3:] for text in pair]
    assert [m["content"] for m in messages] == expected_window + [story.KEYWORD_QUESTION]
    assert [m["role"] for m in messages[:2]] == ["user", "assistant"]
    assert "Zanzibar" not in prompt_text(messages)


def test_vdb_recalls_an_early_fact_by_meaning(make_memory, story):
    memory = make_memory("vdb")
    session_id = story.long_session(memory)
    messages = build(memory, session_id, story.SEMANTIC_QUESTION)
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith(RECALL_HEADER)
    assert story.FACT[0] in messages[0]["content"]
    # The window is still replayed after the recall, then the question.
    window = [t for pair in story.FILLER[-3:] for t in pair]
    assert [m["content"] for m in messages[1:]] == window + [story.SEMANTIC_QUESTION]
    # An unrelated question recalls nothing about the sister (similarity below min_score).
    unrelated = build(memory, session_id, "How do I change a flat bicycle tyre?")
    assert "Zanzibar" not in prompt_text(unrelated)


def test_vdb_and_short_term_differ_on_the_same_session(make_memory, story):
    for backend, recalled in (("vdb", True), ("short_term", False)):
        memory = make_memory(backend)
        session_id = story.long_session(memory)
        assert ("Zanzibar" in prompt_text(build(memory, session_id, story.SEMANTIC_QUESTION))) is recalled, backend


def test_kv_recalls_by_keyword_only(make_memory, story):
    memory = make_memory("kv")
    session_id = story.long_session(memory)
    preview = asyncio.run(memory.preview(session_id, story.KEYWORD_QUESTION))
    assert [r.user for r in preview.recalled] == [story.FACT[0]]
    assert "alice" in preview.recalled[0].reason
    assert story.FACT[0] in preview.messages[0]["content"]
    # BM25 has no notion of meaning: the paraphrase shares no keyword with the fact.
    assert "Zanzibar" not in prompt_text(build(memory, session_id, story.SEMANTIC_QUESTION))


def test_graph_recalls_through_a_shared_entity(make_memory, story):
    memory = make_memory("graph")
    session = memory.store.create()
    turns = [story.DOG, ("Biscuit sleeps in the garden shed at night.", "Cosy!")] + story.FILLER

    async def record() -> None:
        for user, assistant in turns:
            await memory.record_turn(session.id, user, assistant)

    asyncio.run(record())
    question = "Where does our dog rest?"
    preview = asyncio.run(memory.preview(session.id, question))
    by_user = {r.user: r for r in preview.recalled}
    assert by_user[story.DOG[0]].reason == "mentions dog"
    # The shed dialog shares no word with the question: it is reached through "Biscuit", the dog's name.
    shed = by_user["Biscuit sleeps in the garden shed at night."]
    assert shed.reason.startswith("linked through") and "biscuit" in shed.reason
    assert list(by_user) == [story.DOG[0], shed.user]  # the direct mention ranks first


def test_recorded_turn_keeps_what_was_recalled(make_memory, story):
    memory = make_memory("kv")
    session_id = story.long_session(memory)
    build(memory, session_id, story.KEYWORD_QUESTION)
    asyncio.run(memory.record_turn(session_id, story.KEYWORD_QUESTION, "Coral reefs."))
    last_user = memory.store.get(session_id).messages[-2]
    assert last_user.content == story.KEYWORD_QUESTION
    assert [r.user for r in last_user.recall] == [story.FACT[0]]


def test_injection_merges_into_the_client_system_prompt_and_respects_history(make_memory, story):
    memory = make_memory("kv")
    session_id = story.long_session(memory)
    messages = build(memory, session_id, story.KEYWORD_QUESTION, system="You are terse.")
    assert sum(m["role"] == "system" for m in messages) == 1
    assert messages[0]["content"].startswith("You are terse.") and story.FACT[0] in messages[0]["content"]
    # A client that resends its own history gets the recall but not a second copy of the window.
    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "reply"},
               {"role": "user", "content": story.KEYWORD_QUESTION}]
    with_history = asyncio.run(memory.build_messages(session_id, history))
    assert with_history[1:] == history and story.FACT[0] in with_history[0]["content"]


def test_injected_memory_stays_within_the_character_budget(make_memory, story):
    memory = make_memory("kv", max_recall_chars=300)
    session = memory.store.create()
    long_text = "Alice " + "blah " * 400

    async def record() -> None:
        for _ in range(6):
            await memory.record_turn(session.id, long_text, long_text)

    asyncio.run(record())
    messages = build(memory, session.id, story.KEYWORD_QUESTION)
    injected = sum(len(m["content"]) for m in messages[:-1])
    assert 0 < injected <= 300 + len(RECALL_HEADER) + 40


def test_unknown_session_raises_key_error(make_memory):
    memory = make_memory("short_term")
    with pytest.raises(KeyError):
        build(memory, "no-such-session", "hello")


def test_two_replicas_on_one_database_stay_consistent(make_memory, tmp_path, story):
    from sage_studio.memory import MemoryConfig, open_chat_memory

    a = make_memory("kv")
    b = open_chat_memory(a.store.path.parent, MemoryConfig(backend="kv", max_dialogs=3))
    try:
        session_id = story.long_session(a)
        assert story.FACT[0] in prompt_text(build(b, session_id, story.KEYWORD_QUESTION))  # b indexed a's writes
        asyncio.run(a.clear(session_id))
        asyncio.run(a.record_turn(session_id, "Bob likes tea.", "Noted."))
        for filler in story.FILLER[:3]:
            asyncio.run(a.record_turn(session_id, *filler))
        # b's cached index predates the clear: it is rebuilt, so the cleared fact is gone and the new one is found.
        assert "Zanzibar" not in prompt_text(build(b, session_id, story.KEYWORD_QUESTION))
        assert "Bob likes tea." in prompt_text(build(b, session_id, "Does Bob like tea?"))
    finally:
        b.close()


def test_a_turn_for_a_session_deleted_mid_request_is_dropped(make_memory):
    memory = make_memory("kv")
    session_id = memory.store.create().id
    build(memory, session_id, "hello")
    asyncio.run(memory.delete(session_id))
    asyncio.run(memory.record_turn(session_id, "hello", "hi"))  # the reply finished after the delete
    assert not memory.store.exists(session_id)
