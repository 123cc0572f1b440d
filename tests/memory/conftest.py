"""Fixtures for memory tests: a real store with a long session whose first dialog states a fact."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from sage_studio.memory import ChatMemory, MemoryConfig, open_chat_memory

FACT = ("My sister Alice moved to Zanzibar last spring to study coral reefs.", "How exciting for her!")
DOG = ("Our dog is called Biscuit.", "Biscuit is a lovely name.")
# Small talk that pushes the fact out of a 3-dialog window and shares no keyword with the questions below.
FILLER = [
    ("Can you recommend a good pasta recipe?", "Try spaghetti aglio e olio: garlic, olive oil and chili."),
    ("How long should I boil the spaghetti?", "About nine minutes for al dente."),
    ("What is a good laptop for programming?", "Any machine with 16 GB of RAM and an SSD works well."),
    ("Explain recursion briefly.", "A function that calls itself on a smaller problem."),
    ("What's the weather usually like in Oslo in March?", "Cold, around zero degrees Celsius."),
    ("Suggest a name for a chess club.", "The Knight Owls."),
    ("How many minutes in a day?", "1440 minutes."),
    ("Give me a synonym for happy.", "Cheerful."),
]
# Needs the fact, by meaning (no shared keyword) and by keyword.
SEMANTIC_QUESTION = "Which island does my sibling live on now?"
KEYWORD_QUESTION = "What is Alice studying there?"


def long_session(memory: ChatMemory, with_dog: bool = False) -> str:
    """A session: the fact first (and the dog), then the filler, stored through the real record path."""
    session = memory.store.create()

    async def record() -> None:
        for user, assistant in [FACT] + ([DOG] if with_dog else []) + FILLER:
            await memory.record_turn(session.id, user, assistant)

    asyncio.run(record())
    return session.id


@pytest.fixture
def story() -> SimpleNamespace:
    """The conversation data above, for tests (test modules cannot import conftest)."""
    return SimpleNamespace(
        FACT=FACT,
        DOG=DOG,
        FILLER=FILLER,
        SEMANTIC_QUESTION=SEMANTIC_QUESTION,
        KEYWORD_QUESTION=KEYWORD_QUESTION,
        long_session=long_session,
    )


@pytest.fixture
def make_memory(tmp_path):
    """Open a ChatMemory with the given backend on a fresh SAGE_HOME-like folder (closed at teardown)."""
    opened: list[ChatMemory] = []

    def make(backend: str, **overrides) -> ChatMemory:
        config = MemoryConfig(backend=backend, max_dialogs=overrides.pop("max_dialogs", 3), **overrides)
        memory = open_chat_memory(tmp_path / f"home-{len(opened)}", config)
        opened.append(memory)
        return memory

    yield make
    for memory in opened:
        memory.close()
