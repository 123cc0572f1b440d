"""Pipelines through the running studio (real Serve, real vLLM on the tiny model, real HTTP, Ray Data batches)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from studio_helpers import followed

from tests.pipelines.pipeline_helpers import make_pipeline

REPO = Path(__file__).resolve().parents[2]
QUESTION = {"question": "What is the default port?", "answer": "8000"}


@pytest.fixture(scope="module")
def http(studio):
    with httpx.Client(base_url=studio.base_url, timeout=300) as client:
        yield client


def bm25_qa(with_generator: bool):
    """Question → BM25 over the bundled docs → QA prompt → the studio's model (tiny: short prompts only)."""
    nodes = [
        {"id": "question", "type": "text_input", "config": {"field": "question"}},
        {"id": "reference", "type": "text_input", "config": {"field": "answer"}},
        {"id": "docs", "type": "file_source", "config": {"folder": "docs", "path": "*.md"}},
        {"id": "chunks", "type": "chunker", "config": {"chunk_size": 300, "overlap": 0}},
        {"id": "retriever", "type": "retriever", "config": {"top_k": 1, "method": "bm25"}},
        {"id": "recall", "type": "recall_evaluator"},
    ]
    edges = [["docs", "chunks"], {"source": "chunks", "target": "retriever", "target_port": "documents"},
             {"source": "question", "target": "retriever", "target_port": "query"},
             {"source": "retriever", "target": "recall", "target_port": "prediction"},
             {"source": "reference", "target": "recall", "target_port": "reference"}]
    if with_generator:
        nodes += [{"id": "promptor", "type": "promptor", "config": {"max_context_chars": 300}},
                  {"id": "generator", "type": "generator", "config": {"max_tokens": 12}},
                  {"id": "answer", "type": "print_sink"}]
        edges += [{"source": "question", "target": "promptor", "target_port": "question"},
                  {"source": "retriever", "target": "promptor", "target_port": "context"},
                  {"source": "promptor", "target": "generator", "target_port": "prompt"}, ["generator", "answer"]]
    return make_pipeline(nodes, edges, name="BM25 QA").model_dump(mode="json")


def wait_for_job(http, job_id: str, limit_s: float = 240) -> tuple[dict, list[int]]:
    seen, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        job = http.get(f"/api/pipelines/batches/{job_id}").json()
        seen.append(job["done"])
        if job["status"] in ("completed", "failed"):
            return job, seen
        time.sleep(0.5)
    raise AssertionError(f"batch job {job_id} did not finish in {limit_s} s: {job}")


def asked_the_model(http, tokenizer, online: dict) -> None:
    """The generator sent the promptor's messages (the question and the passage found) to the studio's model, and
    its output is that model's answer to them."""
    prompt = online["nodes"]["promptor"]["output"]
    passage = online["nodes"]["retriever"]["output"][0]["text"]
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert passage[:300] in prompt[1]["content"] and prompt[1]["content"].endswith(
        f"Question: {online['nodes']['question']['output']}\nAnswer:")
    generator = online["nodes"]["generator"]
    used = re.search(r"(\d+) prompt \+ (\d+) completion tokens", " ".join(generator["logs"]))
    assert used, generator["logs"]
    template = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert int(used.group(1)) == len(template), "the model got exactly those messages"
    direct = http.post("/v1/chat/completions", json={"model": "sage-default", "messages": prompt, "max_tokens": 12,
                                                     "temperature": 0}).json()  # the generator's defaults
    assert generator["output"] == direct["choices"][0]["message"]["content"]
    assert int(used.group(2)) == direct["usage"]["completion_tokens"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_online_run_in_the_gateway_and_the_python_export_give_the_same_result(http, studio, tmp_path, tokenizer):
    pid = http.post("/api/pipelines", json=bm25_qa(with_generator=True)).json()["id"]
    online = followed(http, http.post(f"/api/pipelines/{pid}/run", json={"input": QUESTION}), 200).json()
    assert online["status"] == "ok", online["error"]
    assert "The default port is 8000" in online["nodes"]["retriever"]["output"][0]["text"]
    asked_the_model(http, tokenizer, online)
    assert set(online["result"]) == {"recall", "answer"} and online["result"]["recall"]["value"] == 1.0
    assert online["result"]["answer"] == online["nodes"]["generator"]["output"]  # the print sink passes it on

    script = tmp_path / "qa.py"
    script.write_text(http.get(f"/api/pipelines/{pid}/python").text)
    env = dict(os.environ, SAGE_STUDIO_URL=studio.base_url, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, str(script), "--input-json", json.dumps(QUESTION)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == online["result"]


def test_batch_of_1000_rows_on_ray_data_reports_bad_rows_and_goes_on(http, tmp_path):
    pid = http.post("/api/pipelines", json=bm25_qa(with_generator=False)).json()["id"]
    lines = [json.dumps({"question": f"What is the default port? ({i})", "answer": "8000"}) for i in range(1000)]
    lines[99] = "{this is not json"
    lines[499] = json.dumps({"prompt": "no question field"})
    started = http.post(f"/api/pipelines/{pid}/batch",
                        files={"file": ("questions.jsonl", "\n".join(lines).encode(), "application/x-ndjson")})
    assert started.status_code == 202, started.text
    job, seen = wait_for_job(http, started.json()["job_id"])
    assert job["status"] == "completed", job
    assert (job["total"], job["done"], job["failed"], job["progress"]) == (1000, 1000, 2, 1.0)
    assert [e["row"] for e in job["errors"]] == [100, 500]
    assert "not valid JSON" in job["errors"][0]["error"] and "no field 'question'" in job["errors"][1]["error"]
    assert job["metrics"] == {"recall": 1.0}
    assert seen == sorted(seen)
    rows = [json.loads(line) for line in http.get(f"/api/pipelines/batches/{job['job_id']}/output").text.splitlines()]
    assert sorted(r["row"] for r in rows) == list(range(1, 1001))
    assert sum(r["status"] == "ok" for r in rows) == 998
    assert http.get(f"/api/pipelines/{pid}/batches").json()[0]["job_id"] == job["job_id"]


def test_batch_workers_reach_the_llm_and_csv_input_works(http, tokenizer):
    pid = http.post("/api/pipelines", json=bm25_qa(with_generator=True)).json()["id"]
    inputs = [{"question": f"What is the default port? {i}", "answer": "8000"} for i in range(4)]
    csv_text = "question,answer\n" + "".join(f"{row['question']},{row['answer']}\n" for row in inputs)
    started = http.post(f"/api/pipelines/{pid}/batch", files={"file": ("q.csv", csv_text.encode(), "text/csv")})
    job, _ = wait_for_job(http, started.json()["job_id"])
    assert (job["status"], job["done"], job["failed"]) == ("completed", 4, 0), job
    rows = [json.loads(line) for line in http.get(f"/api/pipelines/batches/{job['job_id']}/output").text.splitlines()]
    # Each row's result is what an online run of that row gives: the CSV row reached the pipeline, the model asked.
    for row in sorted(rows, key=lambda r: r["row"]):
        online = followed(http, http.post(f"/api/pipelines/{pid}/run", json={"input": inputs[row["row"] - 1]}),
                          200).json()
        assert online["status"] == "ok", online["error"]
        asked_the_model(http, tokenizer, online)
        assert row["output"] == online["result"]


def test_chat_with_memory_template_records_the_turn_in_the_session(http):
    session = http.post("/sessions").json()["id"]
    pipeline = http.post("/api/pipelines/templates/chat_with_memory").json()
    for node in pipeline["nodes"]:
        if node["type"] == "generator":
            node["config"]["max_tokens"] = 8
    pid = pipeline["id"]
    http.put(f"/api/pipelines/{pid}", json=pipeline).raise_for_status()
    ran = followed(http, http.post(f"/api/pipelines/{pid}/run",
                                    json={"input": {"message": "Hello pipeline", "session_id": session}}), 200)
    assert ran.json()["status"] == "ok", ran.json()["error"]
    messages = http.get(f"/sessions/{session}").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[0]["content"] == "Hello pipeline"
    assert messages[1]["content"] == ran.json()["result"]["transcript"]


def test_cli_runs_exports_and_imports_through_the_studio(http, studio, tmp_path):
    from typer.testing import CliRunner

    from sage_cli.pipeline import app

    cli, url = CliRunner(), ["--url", studio.base_url]
    pid = http.post("/api/pipelines", json=bm25_qa(with_generator=False)).json()["id"]
    exported = tmp_path / "p.json"
    assert cli.invoke(app, ["export", pid, "-o", str(exported), *url]).exit_code == 0
    done = cli.invoke(app, ["run", str(exported), "--input-json", json.dumps(QUESTION), *url])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout.strip().splitlines()[-1])["recall"]["value"] == 1.0
    imported = cli.invoke(app, ["import", str(exported), *url])
    assert imported.exit_code == 0 and imported.stdout.strip().startswith("pl_")
    script = cli.invoke(app, ["export", pid, "--python", *url])
    assert script.exit_code == 0 and "PipelineRunner(built).run(run_input)" in script.stdout
    missing = cli.invoke(app, ["export", "pl_000000000000", *url])
    assert missing.exit_code == 1 and "No pipeline with id 'pl_000000000000'" in missing.output
