"""`sage pipeline` commands that need no studio: local runs and their errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sage_cli.pipeline import app
from pipelines.models import export_json
from tests.pipelines.pipeline_helpers import make_pipeline

runner = CliRunner()


def test_run_local_prints_the_result(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGE_HOME", str(tmp_path / "home"))
    pipeline = make_pipeline(
        [{"id": "q", "type": "text_input", "config": {"field": "question"}},
         {"id": "t", "type": "text_template", "config": {"template": "Q: $text"}}],
        [["q", "t"]],
    )
    path = tmp_path / "p.json"
    path.write_text(export_json(pipeline))
    done = runner.invoke(app, ["run", str(path), "--local", "--input-json", '{"question": "why?"}', "-v"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"t": "Q: why?"}


def test_run_local_reports_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGE_HOME", str(tmp_path / "home"))
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    assert runner.invoke(app, ["run", str(bad), "--local"]).exit_code == 1
    cyclic = tmp_path / "cyclic.json"
    cyclic.write_text(make_pipeline(
        [{"id": "a", "type": "join_text"}, {"id": "b", "type": "join_text"}], [["a", "b"], ["b", "a"]]
    ).model_dump_json())
    done = runner.invoke(app, ["run", str(cyclic), "--local"])
    assert done.exit_code == 1 and "cycle" in done.output
    unreachable = runner.invoke(app, ["list", "--url", "http://127.0.0.1:9"])
    assert unreachable.exit_code == 2 and "cannot reach the studio" in unreachable.output
