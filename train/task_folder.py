"""One fine-tune's folder (``SAGE_HOME/studio_finetune/<task id>/``): the files its Ray job writes and the job
manager reads.

The folder is the only channel between the two: the job (``train.run`` and the progress actor of ``train.loop``)
writes, the manager reads and folds what it reads into the task's row, so a fine-tune outlives a restart of the
studio. Whole files are replaced atomically (a reader sees the old or the new one, never half of it);
``metrics.jsonl`` and ``train.log`` only grow, and a reader skips a line still being written.
"""

from __future__ import annotations

import json
from pathlib import Path

from sage_studio.files import append_log, atomic_write

TASK = "task.json"  # the request as run, written by the manager before it submits the job
STATUS = "status.json"  # the latest progress (phase, step, loss, eta_s, failures, last checkpoint)
METRICS = "metrics.jsonl"  # one line per step
RESULT = "result.json"  # how the job ended: completed (adapter, steps, final loss) or failed (error)
HELD_OUT = "held_out.json"  # the row numbers held out for evaluation (never trained on), with val_size and seed
TRAIN_LOG = "train.log"  # progress, failures and restarts, for people
JOB_LOG = "job.log"  # the whole Ray job log, saved by the manager when the job ends


def adapter_dir(task_dir: str | Path) -> Path:
    """Where a fine-tune's LoRA adapter lies (PEFT format, with the tokenizer), whether or not it is there yet."""
    return Path(task_dir) / "adapter"


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=1))


def read_json(path: Path) -> dict:
    """The file's object; {} while it is missing (the job has not written it yet) or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def log(task_dir: Path, line: str, *, echo: bool = False) -> None:
    """Append a timestamped line to ``train.log``; ``echo`` prints it too, which a Ray job keeps in its own log."""
    if echo:
        print(f"[sage] {line}", flush=True)
    append_log(task_dir / TRAIN_LOG, line)


def read_metrics(task_dir: Path) -> list[dict]:
    """Loss per step (the last report of a step wins: steps redone after a resume replace the old ones)."""
    by_step: dict[int, dict] = {}
    path = task_dir / METRICS
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                m = json.loads(line)
            except ValueError:
                continue  # a line being written right now
            by_step[m["step"]] = {k: m.get(k) for k in ("step", "epoch", "loss", "eval_loss", "base_eval_loss",
                                                          "lr", "time", "resumed_from")}
    return [by_step[s] for s in sorted(by_step)]


def read_saved_log(task_dir: Path) -> str:
    """The job log the manager saved, else the progress log, else ''."""
    for name in (JOB_LOG, TRAIN_LOG):
        path = task_dir / name
        if path.is_file():
            return path.read_text(errors="replace")
    return ""
