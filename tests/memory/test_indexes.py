"""Memory indexes as caches of SQLite: persisted vectors, freed on cleanup, stats and config."""

from __future__ import annotations

import asyncio
import time

from sage_studio.memory import MemoryConfig, open_chat_memory
from sage_studio.memory.embeddings import Embedder


def test_cleanup_frees_the_indexes_of_idle_sessions_only(make_memory, story):
    memory = make_memory("vdb")
    idle = story.long_session(memory)
    time.sleep(1.2)
    busy = memory.store.create().id
    asyncio.run(memory.record_turn(busy, *story.FACT))
    assert memory.backend.index_info(idle)["persisted_vectors"] == 2 * (1 + len(story.FILLER))
    removed = asyncio.run(memory.cleanup(1.0))
    assert removed == [idle]
    assert memory.backend.index_info(idle) == {"loaded": False, "collection": f"session-{idle}", "persisted_vectors": 0}
    kept = memory.backend.index_info(busy)
    assert kept["loaded"] and kept["vectors"] == 2 and kept["persisted_vectors"] == 2


def test_clear_and_delete_free_the_index(make_memory, story):
    memory = make_memory("kv")
    session_id = story.long_session(memory)
    assert memory.backend.index_info(session_id)["loaded"]
    asyncio.run(memory.clear(session_id))
    assert memory.backend.index_info(session_id) == {"loaded": False}
    assert memory.store.get(session_id).messages == []
    asyncio.run(memory.delete(session_id))
    assert not memory.store.exists(session_id)


def test_a_new_process_reuses_persisted_vectors(make_memory, story, monkeypatch):
    first = make_memory("vdb")
    session_id = story.long_session(first)
    encoded: list[int] = []
    original = Embedder.encode

    def counting(self, texts):
        encoded.append(len(texts))
        return original(self, texts)

    # A second ChatMemory on the same folder: a restarted gateway or another replica, with an empty index cache.
    second = open_chat_memory(first.store.path.parent, MemoryConfig(backend="vdb", max_dialogs=3))
    monkeypatch.setattr(Embedder, "encode", counting)
    try:
        preview = asyncio.run(second.preview(session_id, story.SEMANTIC_QUESTION))
        assert story.FACT[0] in [r.user for r in preview.recalled]
        assert encoded == [1]  # only the question was embedded; the dialogs' vectors came from SQLite
        assert second.backend.index_info(session_id)["vectors"] == 2 * (1 + len(story.FILLER))
    finally:
        second.close()


def test_stats_report_window_usage_and_index(make_memory, story):
    memory = make_memory("kv", max_dialogs=4)
    long_id = story.long_session(memory)
    short_id = memory.store.create().id
    asyncio.run(memory.record_turn(short_id, "hello", "hi"))
    stats = asyncio.run(memory.stats())
    assert stats.backend == "kv" and stats.max_dialogs == 4 and stats.total_sessions == 2
    rows = {s.session_id: s for s in stats.sessions}
    assert rows[long_id].dialog_count == 1 + len(story.FILLER) and rows[long_id].usage_percent == 100.0
    assert rows[short_id].dialog_count == 1 and rows[short_id].usage_percent == 25.0
    assert rows[long_id].index["type"] == "bm25" and rows[long_id].index["documents"] == 1 + len(story.FILLER)
    single = asyncio.run(memory.stats(short_id))
    assert [s.session_id for s in single.sessions] == [short_id] and single.total_sessions == 2


def test_config_lists_every_backend(make_memory):
    info = asyncio.run(make_memory("vdb").config_info())
    assert info.backend == "vdb" and info.embedding_model == "all-MiniLM-L6-v2"
    assert [b.name for b in info.available_backends] == ["short_term", "vdb", "kv", "graph"]
    assert all(b.available for b in info.available_backends)
    assert asyncio.run(make_memory("short_term").config_info()).embedding_model is None


def test_index_cache_is_bounded_and_rebuilds_evicted_sessions(make_memory, story):
    memory = make_memory("graph", max_cached_sessions=1)
    first = story.long_session(memory)
    second = story.long_session(memory)
    assert memory.backend.index_info(first) == {"loaded": False}  # evicted by the second session
    assert memory.backend.index_info(second)["loaded"]
    preview = asyncio.run(memory.preview(first, "Tell me about Alice"))
    assert [r.user for r in preview.recalled] == [story.FACT[0]]
    assert memory.backend.index_info(first)["loaded"] and not memory.backend.index_info(second)["loaded"]
