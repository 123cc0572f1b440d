"""Chat memory: what a session's earlier dialogs put back into the prompt (short_term, vdb, kv, graph)."""

from sage_studio.memory.base import MemoryBackend, Recall
from sage_studio.memory.chat_memory import ChatMemory, open_chat_memory
from sage_studio.memory.config import MemoryConfig
from sage_studio.memory.factory import available_backends, create_backend

__all__ = [
    "ChatMemory",
    "MemoryBackend",
    "MemoryConfig",
    "Recall",
    "available_backends",
    "create_backend",
    "open_chat_memory",
]
