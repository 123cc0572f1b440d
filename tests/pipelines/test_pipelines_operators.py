"""Operators on their own: sources stay inside allowed folders, transforms and evaluators compute real values."""

from __future__ import annotations

import json
import os

import pytest

from pipelines.builder import PipelineBuilder
from pipelines.operators.base import RunContext
from pipelines.operators.memory_sink import collected
from pipelines.registry import default_registry
from tests.pipelines.pipeline_helpers import make_pipeline, run


def op(type_name, config, env):
    cls = default_registry().get(type_name)
    return cls(cls.Config.model_validate(config), env)


def call(operator, inputs=None, value=None):
    return operator.run(inputs or {}, RunContext(node_id="n", pipeline_input=value))


@pytest.mark.parametrize("path", ["../secret.txt", "../../secret.txt", "notes/../../secret.txt", "../*", "/etc/passwd",
                                  "/etc/*"])
def test_file_source_cannot_leave_its_allowed_folders(pl_env, path):
    secret = pl_env.folders["uploads"].parent / "secret.txt"
    secret.write_text("top secret")
    with pytest.raises(PermissionError, match="outside the folders pipelines may read"):
        call(op("file_source", {"folder": "uploads", "path": path}, pl_env))


def test_file_source_refuses_a_symlink_that_points_outside(pl_env, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not for pipelines")
    os.symlink(outside, pl_env.folders["uploads"] / "link.txt")
    with pytest.raises(PermissionError):
        call(op("file_source", {"folder": "uploads", "path": "link.txt"}, pl_env))


def test_traversal_through_a_pipeline_run_is_a_node_error(pl_env):
    pipeline = make_pipeline([{"id": "f", "type": "file_source", "config": {"folder": "docs", "path": "../settings.py"}}],
                             [])
    outcome = run(pipeline, pl_env)
    assert outcome.status == "error" and "outside the folders pipelines may read" in outcome.error
    assert outcome.result == {}


def test_file_source_reads_uploads_and_bundled_docs(pl_env):
    (pl_env.folders["uploads"] / "a.md").write_text("alpha")
    (pl_env.folders["uploads"] / "b.txt").write_text("beta")
    docs = call(op("file_source", {"folder": "uploads", "path": "*"}, pl_env))
    assert [(d["id"], d["text"]) for d in docs] == [("uploads/a.md", "alpha"), ("uploads/b.txt", "beta")]
    bundled = call(op("file_source", {"folder": "docs", "path": "*.md"}, pl_env))
    assert any("The default port is 8000" in d["text"] for d in bundled)


def test_json_and_csv_sources(pl_env):
    (pl_env.folders["files"] / "rows.jsonl").write_text('{"id": "x1", "body": "one", "tag": "t"}\n{"body": "two"}\n')
    docs = call(op("json_source", {"folder": "files", "path": "rows.jsonl", "text_field": "body", "id_field": "id"},
                   pl_env))
    assert [d["id"] for d in docs] == ["x1", "files/rows.jsonl#1"] and docs[0]["metadata"]["tag"] == "t"
    inline = call(op("json_source", {"data": '["a", "b"]'}, pl_env))
    assert [d["text"] for d in inline] == ["a", "b"]
    rows = call(op("csv_source", {"content": "title,text\nA,first\nB,second\n"}, pl_env))
    assert [(d["text"], d["metadata"]["title"]) for d in rows] == [("first", "A"), ("second", "B")]
    with pytest.raises(ValueError, match="has no column 'body'"):
        call(op("csv_source", {"content": "title,text\nA,first\n", "text_field": "body"}, pl_env))
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        (pl_env.folders["files"] / "bad.jsonl").write_text('{"text": "ok"}\n{broken\n')
        call(op("json_source", {"folder": "files", "path": "bad.jsonl"}, pl_env))


def test_chunker_keeps_passages_under_the_size_and_links_parents(pl_env):
    text = "# Title\n\n" + "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(6))
    chunks = call(op("chunker", {"chunk_size": 300, "overlap": 30}, pl_env),
                  {"documents": [{"id": "d", "text": text, "metadata": {"source": "s"}}]})
    assert len(chunks) > 3 and all(len(c["text"]) <= 300 for c in chunks)
    assert chunks[0]["metadata"] == {"source": "s", "parent": "d", "chunk": 0}


def test_evaluators():
    f1 = call(op("f1_evaluator", {}, None), {"prediction": "The port is 8000", "reference": "port 8000"})
    assert f1["value"] == pytest.approx(0.8) and f1["name"] == "f1"
    acc = op("accuracy_evaluator", {}, None)
    assert call(acc, {"prediction": "It is Paris.", "reference": "paris"})["value"] == 1.0
    assert call(acc, {"prediction": "Parisian food", "reference": "paris"})["value"] == 0.0
    exact = op("accuracy_evaluator", {"mode": "exact"}, None)
    assert call(exact, {"prediction": "The Paris!", "reference": "paris"})["value"] == 1.0
    recall = op("recall_evaluator", {}, None)
    docs = [{"id": "1", "text": "default port 8000", "metadata": {}}]
    assert call(recall, {"prediction": docs, "reference": "port 8000, 8265"})["value"] == pytest.approx(2 / 3)


def test_promptor_templates(pl_env):
    docs = [{"id": "1", "text": "The default port is 8000.", "metadata": {}}]
    qa = call(op("promptor", {}, pl_env), {"question": "Which port?", "context": docs})
    assert qa[0]["role"] == "system" and "Context:\nThe default port is 8000.\n\nQuestion: Which port?" in qa[1]["content"]
    summary = call(op("promptor", {"template": "summarize", "max_context_chars": 100}, pl_env),
                   {"context": [{"id": "1", "text": "x" * 500, "metadata": {}}]})
    assert summary[1]["content"].endswith("x" * 100) and "x" * 101 not in summary[1]["content"]
    with pytest.raises(ValueError, match="needs a question"):
        call(op("promptor", {"template": "qa"}, pl_env), {"context": docs})


def test_sinks_write_only_inside_the_outputs_folder(pl_env):
    assert PipelineBuilder().validate(make_pipeline(
        [{"id": "s", "type": "file_sink", "config": {"filename": "../escape.jsonl"}}], []))[0].code == "invalid_config"
    sink = op("file_sink", {"filename": "out.jsonl"}, pl_env)
    call(sink, {"value": {"a": 1}})
    call(sink, {"value": "two"})
    lines = (pl_env.output_dir / "out.jsonl").read_text().splitlines()
    assert [json.loads(line)["value"] for line in lines] == [{"a": 1}, "two"]
    memory = op("memory_sink", {"name": "test-buffer", "max_items": 2}, pl_env)
    for value in ("a", "b", "c"):
        assert call(memory, {"value": value}) == value
    assert collected("test-buffer") == ["b", "c"]


def test_no_operator_executes_user_code(pl_env):
    # Templates are string.Template: attribute access and calls stay literal text.
    template = op("text_template", {"template": "$text.__class__ ${text}"}, pl_env)
    assert call(template, {"text": "x"}) == "x.__class__ x"
    for entry in default_registry().palette():
        props = entry["config_schema"].get("properties", {})
        assert not {"code", "script", "function", "lambda", "module", "import_path"} & set(props), entry["type"]
