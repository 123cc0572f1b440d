"""Acceptance: the RAG template answers a question about the bundled docs with the real SmolLM2 model, through a
Serve app of its own (gateway + vLLM), and its retriever node's output holds the passage with the answer."""

from __future__ import annotations

import httpx
import pytest
from studio_helpers import followed

QUESTION = "What is the default port of the studio?"


@pytest.fixture(scope="module")
def smol_studio(studio, smollm2_dir):
    """A second studio app serving SmolLM2 under /smol, next to the tiny-model studio on the same Serve port."""
    from ray import serve

    from deployments.app import build_studio_app
    from deployments.config import ModelConfig, StudioConfig

    config = StudioConfig(
        models=[ModelConfig(name="smollm2", source=str(smollm2_dir), engine="vllm", max_model_len=2048,
                            cpu_kvcache_gib=1)],
        remote=None,
    )
    serve.run(build_studio_app(config), name="pipelines-smol", route_prefix="/smol")
    yield f"{studio.base_url}/smol"
    serve.delete("pipelines-smol")


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
