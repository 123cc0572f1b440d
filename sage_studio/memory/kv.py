"""``kv``: keyword recall of older dialogs with BM25 (rank_bm25)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rank_bm25 import BM25Plus

from sage_studio.memory.base import IndexedBackend
from sage_studio.memory.text import keywords
from sage_studio.sessions.models import Dialog, RecalledDialog


@dataclass
class KeywordIndex:
    """BM25 statistics over a session's dialogs (user turn + reply as one document)."""

    bm25: BM25Plus | None  # None for a session without dialogs (BM25 needs a non-empty corpus)
    keys: list[int]
    tokens: list[set[str]]


class KvMemory(IndexedBackend[KeywordIndex]):
    """Finds older dialogs that share rare keywords with the new question."""

    name = "kv"

    def build(self, session_id: str, dialogs: list[Dialog]) -> KeywordIndex:
        docs = [keywords(f"{d.user}\n{d.assistant}") for d in dialogs]
        # BM25Plus rather than BM25Okapi: Okapi's IDF goes negative when a word is in over half of the documents,
        # which in a short session (2-3 dialogs) ranks the only matching dialog below the others.
        bm25 = BM25Plus([doc or ["\0"] for doc in docs]) if docs else None
        return KeywordIndex(bm25=bm25, keys=[d.key for d in dialogs], tokens=[set(doc) for doc in docs])

    def retrieve(self, index: KeywordIndex, candidates: list[Dialog], query: str) -> list[RecalledDialog]:
        terms = list(dict.fromkeys(keywords(query)))
        if not terms or index.bm25 is None:
            return []
        position = {key: i for i, key in enumerate(index.keys)}
        rows = [(d, position[d.key]) for d in candidates if d.key in position]
        # BM25Plus gives every document a floor score per term: only dialogs sharing a keyword are recalled.
        rows = [(d, i) for d, i in rows if index.tokens[i].intersection(terms)]
        if not rows:
            return []
        scores = index.bm25.get_batch_scores(terms, [i for _, i in rows])
        ranked = sorted(zip(rows, scores), key=lambda item: item[1], reverse=True)
        return [
            RecalledDialog(
                dialog=d.index,
                user=d.user,
                assistant=d.assistant,
                score=round(float(score), 4),
                reason="keywords: " + ", ".join(t for t in terms if t in index.tokens[i]),
            )
            for (d, i), score in ranked[: self.config.top_k]
        ]

    def describe(self, index: KeywordIndex) -> dict[str, Any]:
        return {
            "type": "bm25",
            "documents": len(index.keys),
            "vocabulary": len(index.bm25.idf) if index.bm25 else 0,
            "avg_document_tokens": round(float(index.bm25.avgdl), 1) if index.bm25 else 0.0,
        }
