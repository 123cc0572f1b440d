"""Saved pipelines are files with server-chosen names; export/import round-trips; Python export really runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import VisualPipeline, export_json, import_json
from pipelines.export import export_python
from pipelines.models import PIPELINE_FORMAT_VERSION
from pipelines.store import PipelineNotFound, PipelineStore
from pipelines.templates import load_template, template_names
from pipelines.builder import PipelineBuilder
from tests.pipelines.pipeline_helpers import make_pipeline, run

REPO = Path(__file__).resolve().parents[2]


def bm25_pipeline() -> VisualPipeline:
    return make_pipeline(
        [
            {"id": "q", "type": "text_input", "config": {"field": "question"}, "position": {"x": 10, "y": 20}},
            {"id": "ref", "type": "text_input", "config": {"field": "answer"}},
            {"id": "docs", "type": "file_source", "config": {"folder": "docs", "path": "*.md"}},
            {"id": "chunks", "type": "chunker", "config": {"chunk_size": 400, "overlap": 40}},
            {"id": "ret", "type": "retriever", "config": {"top_k": 2, "method": "bm25"}},
            {"id": "recall", "type": "recall_evaluator"},
            {"id": "shown", "type": "join_text", "config": {"separator": " || "}},
        ],
        [["docs", "chunks"], {"source": "chunks", "target": "ret", "target_port": "documents"},
         {"source": "q", "target": "ret", "target_port": "query"},
         {"source": "ret", "target": "recall", "target_port": "prediction"},
         {"source": "ref", "target": "recall", "target_port": "reference"},
         ["ret", "shown"], ["q", "shown"]],
        name="BM25 recall check",
    )


def test_store_crud_with_server_chosen_ids(tmp_path):
    store = PipelineStore(tmp_path / "pipelines")
    saved = store.create(bm25_pipeline().model_copy(update={"id": "../../evil"}))
    assert saved.id.startswith("pl_") and (tmp_path / "pipelines" / f"{saved.id}.json").is_file()
    assert store.get(saved.id) == saved
    changed = store.update(saved.id, saved.model_copy(update={"name": "renamed", "created_at": "1999"}))
    assert changed.name == "renamed" and changed.created_at == saved.created_at
    second = store.create(VisualPipeline(name="other", nodes=[{"id": "a", "type": "text_input"}]))
    assert {p.id for p in store.list()} == {saved.id, second.id}
    store.delete(saved.id)
    for bad in (saved.id, "../../etc/passwd", "pl_zz"):
        with pytest.raises(PipelineNotFound):
            store.get(bad)
    assert sorted(p.name for p in (tmp_path / "pipelines").iterdir()) == [f"{second.id}.json"]


def test_export_import_round_trip_is_equal():
    pipeline = bm25_pipeline().model_copy(update={"id": "pl_0123456789ab"})
    text = export_json(pipeline)
    assert json.loads(text)["version"] == PIPELINE_FORMAT_VERSION
    assert import_json(text) == pipeline
    assert import_json(export_json(import_json(text))) == pipeline


def test_import_refuses_bad_files():
    with pytest.raises(ValueError, match="not valid JSON"):
        import_json("{nope")
    future = json.loads(export_json(bm25_pipeline()))
    future["version"] = PIPELINE_FORMAT_VERSION + 1
    with pytest.raises(ValueError, match="version 2 is not supported"):
        import_json(json.dumps(future))


@pytest.mark.parametrize("name", template_names())
def test_templates_are_valid(name):
    assert PipelineBuilder().validate(load_template(name)) == []


def test_python_export_runs_in_a_fresh_process_and_prints_the_online_result(pl_env, tmp_path):
    pipeline = bm25_pipeline()
    row = {"question": "Where is data kept by default?", "answer": "~/.sage"}
    expected = run(pipeline, pl_env, row)
    assert expected.status == "ok"
    script = tmp_path / "exported.py"
    script.write_text(export_python(pipeline))
    env = dict(os.environ, SAGE_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, str(script), "--input-json", json.dumps(row)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected.result
    # The script holds the pipeline as Python objects, not a pickled or eval'd blob.
    assert "VisualNode(" in script.read_text() and "eval(" not in script.read_text()
