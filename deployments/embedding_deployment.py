"""``/v1/embeddings``: a Serve deployment of a sentence-embedding model — the packaged MiniLM by default, the same
embedder the ``vdb`` memory uses — answering OpenAI's embeddings API.

Its answer has OpenAI's shape (``{"object": "list", "data": [{"embedding", "index"}], "model", "usage"}``); vectors
are L2-normalised, so a dot product is the cosine similarity. What the model cannot do (token-id input,
``dimensions``) is a 400 naming the field.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
from ray import serve

from deployments.engines.base import OpenAIResponse, error_body

MAX_INPUTS = 2048


@serve.deployment(ray_actor_options={"num_cpus": 0})
class EmbeddingDeployment:
    def __init__(self, model_name: str):
        from sage_studio.memory.embeddings import get_embedder

        self.model_name = model_name
        self.embedder = get_embedder(model_name)

    async def embed(self, body: dict[str, Any]) -> OpenAIResponse:
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return error_body(400, "'input' must be a string or a non-empty list of strings (token-id input is not "
                                   "supported by this model).", "input")
        if len(texts) > MAX_INPUTS:
            return error_body(400, f"'input' holds {len(texts)} texts; at most {MAX_INPUTS} per request.", "input")
        if body.get("dimensions") not in (None, self.embedder.dim):
            return error_body(400, f"'dimensions' must be {self.embedder.dim} for {self.model_name} (it cannot "
                                   "shorten its vectors).", "dimensions")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            return error_body(400, "'encoding_format' must be 'float' or 'base64'.", "encoding_format")
        vectors = await asyncio.to_thread(self.embedder.encode, texts)
        tokens = sum(len(ids) for ids in self.embedder.tokenize(texts))
        data = [{"object": "embedding", "index": i, "embedding": _encode(v, encoding)} for i, v in enumerate(vectors)]
        return OpenAIResponse(200, {"object": "list", "data": data, "model": self.model_name,
                                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":  # what the openai client asks for by default: little-endian float32 bytes
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]
