"""Acceptance: the RAG template answers a question about the bundled docs with the real SmolLM2 model, through a
Serve app beside the tiny-model studio (gateway + vLLM: conftest's smol_studio, shared with the OpenAI-compat
suite), and its retriever node's output holds the passage with the answer."""

from __future__ import annotations

import httpx
import pytest
from studio_helpers import followed

QUESTION = "What is the default port of the studio?"


@pytest.mark.slow
def test_rag_template_answers_from_the_docs_with_smollm2(smol_studio):
    with httpx.Client(base_url=smol_studio, timeout=600) as http:
        pid = http.post("/api/pipelines/templates/rag_qa").json()["id"]
        ran = followed(http, http.post(f"/api/pipelines/{pid}/run", json={"input": {"question": QUESTION}}), 200).json()
    assert ran["status"] == "ok", ran["error"]
    passages = [doc["text"] for doc in ran["nodes"]["retriever"]["output"]]
    assert any("The default port is 8000" in text for text in passages), passages
    answer = ran["result"]["answer"]
    assert "8000" in answer, answer
    assert ran["nodes"]["generator"]["logs"][0].endswith("/smol/v1/chat/completions model=sage-default")
