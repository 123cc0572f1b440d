"""The task folder, the only channel between a fine-tune's Ray job and the job manager: what the manager reads
while the job is still writing (a torn metrics line, a step redone after a resume, files not written yet)."""

from __future__ import annotations

import json

from train.task_folder import (JOB_LOG, METRICS, STATUS, TRAIN_LOG, adapter_dir, log, read_json, read_metrics,
                               read_saved_log, write_json)


def test_metrics_keep_the_last_report_of_a_step_and_skip_a_torn_line(tmp_path):
    lines = [{"step": 1, "loss": 3.0, "resumed_from": 0}, {"step": 2, "loss": 2.5, "resumed_from": 0},
             {"step": 2, "loss": 2.4, "resumed_from": 1}, {"step": 3, "loss": 2.0, "resumed_from": 1}]
    (tmp_path / METRICS).write_text("".join(json.dumps(m) + "\n" for m in lines) + '{"step": 4, "lo')
    points = read_metrics(tmp_path)
    assert [(p["step"], p["loss"], p["resumed_from"]) for p in points] == [(1, 3.0, 0), (2, 2.4, 1), (3, 2.0, 1)]
    assert points[0] == {"step": 1, "epoch": None, "loss": 3.0, "eval_loss": None, "base_eval_loss": None, "lr": None,
                         "time": None, "resumed_from": 0}
    assert read_metrics(tmp_path / "not-yet") == []


def test_json_files_read_empty_until_written_whole(tmp_path):
    assert read_json(tmp_path / STATUS) == {}
    (tmp_path / STATUS).write_text('{"state": "train')  # what a non-atomic writer could leave
    assert read_json(tmp_path / STATUS) == {}
    write_json(tmp_path / STATUS, {"state": "training", "step": 7})
    assert read_json(tmp_path / STATUS) == {"state": "training", "step": 7}
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATUS]  # no temporary file left beside it


def test_saved_log_prefers_the_job_log(tmp_path, capsys):
    assert read_saved_log(tmp_path) == ""
    log(tmp_path, "step 1/2", echo=True)
    assert capsys.readouterr().out == "[sage] step 1/2\n"
    assert read_saved_log(tmp_path).endswith(" step 1/2\n") and (tmp_path / TRAIN_LOG).is_file()
    (tmp_path / JOB_LOG).write_text("the whole Ray job log")
    assert read_saved_log(tmp_path) == "the whole Ray job log"
    assert adapter_dir(str(tmp_path)) == tmp_path / "adapter"
