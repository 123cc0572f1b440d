"""Batch runs: a JSONL or CSV file of inputs, each row run through the pipeline on Ray Data, one output row each.

Rows are run by a pool of Ray Data actors, each holding one built pipeline (so a corpus is chunked, embedded and
indexed once per actor, not once per row); inside an actor the rows of a batch run on a few threads, which keeps a
generator's requests to the LLM concurrent. The driver streams results into the output file as they arrive and
reports progress through a callback. A row that fails (bad JSON, a missing field, a node error) becomes an output
row with its error: it never stops the batch.
"""

from __future__ import annotations

import csv
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipelines.models import VisualPipeline
from pipelines.operators.base import OperatorEnv

MAX_ROWS = 200_000
MAX_REPORTED_ERRORS = 20


def read_rows(path: Path) -> list[str]:
    """Each input row as a JSON text. JSONL lines are kept verbatim (so a broken line is reported by the worker
    with its row number); CSV rows become JSON objects keyed by the header."""
    rows: list[str] = []
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise ValueError("the CSV file has no header row")
            for record in reader:
                # DictReader files surplus cells under the key None; keep them visible rather than dropping them.
                record = {("_extra" if k is None else k): v for k, v in record.items()}
                rows.append(json.dumps(record, ensure_ascii=False))
        else:
            rows = [line.rstrip("\r\n") for line in handle if line.strip()]
    if not rows:
        raise ValueError("the input file has no rows")
    if len(rows) > MAX_ROWS:
        raise ValueError(f"the input file has {len(rows)} rows; a batch takes at most {MAX_ROWS}")
    return rows


class PipelineWorker:
    """Ray Data actor: builds the pipeline once, then runs each row of every batch it is given."""

    def __init__(self, pipeline_json: str, env: OperatorEnv, threads: int):
        from pipelines.builder import PipelineBuilder
        from pipelines.runner import PipelineRunner

        pipeline = VisualPipeline.model_validate_json(pipeline_json)
        self.runner = PipelineRunner(PipelineBuilder(env=env).build(pipeline), max_workers=2)
        self.threads = threads

    def _one(self, raw: str) -> tuple[str, str, str]:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            return "error", "null", f"not valid JSON: {exc.msg} at column {exc.colno}"
        outcome = self.runner.run(value)
        if outcome.status != "ok":
            return "error", "null", outcome.error or "failed"
        return "ok", json.dumps(outcome.result, ensure_ascii=False, sort_keys=True), ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            done = list(pool.map(self._one, batch["raw"].tolist()))
        return {
            "row": batch["row"],
            "status": np.array([d[0] for d in done], dtype=object),
            "output": np.array([d[1] for d in done], dtype=object),
            "error": np.array([d[2] for d in done], dtype=object),
        }


@dataclass
class BatchSummary:
    """Counts and per-metric means of a finished (or running) batch."""

    total: int
    done: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    _sums: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def add(self, row: int, status: str, output: str, error: str) -> None:
        self.done += 1
        if status != "ok":
            self.failed += 1
            if len(self.errors) < MAX_REPORTED_ERRORS:
                self.errors.append({"row": row, "error": error})
            return
        for node, value in json.loads(output).items():
            # Evaluator outputs ({"name", "value"}) are averaged over the batch.
            if isinstance(value, dict) and isinstance(value.get("value"), (int, float)) and "name" in value:
                total, count = self._sums.get(node, [0.0, 0])
                self._sums[node] = [total + value["value"], count + 1]
        self.metrics = {node: round(t / c, 6) for node, (t, c) in self._sums.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "done": self.done, "failed": self.failed, "errors": self.errors,
                "metrics": self.metrics, "duration_s": round(self.duration_s, 3)}


def run_batch(
    pipeline: VisualPipeline,
    input_path: Path,
    output_path: Path,
    env: OperatorEnv,
    *,
    concurrency: int = 2,
    threads_per_worker: int = 4,
    batch_size: int = 64,
    num_cpus: float = 0.5,
    on_progress: Callable[[BatchSummary], None] | None = None,
    progress_every_s: float = 1.0,
) -> BatchSummary:
    """Run every row of ``input_path`` through ``pipeline`` on Ray Data, writing ``output_path`` (JSONL, one
    ``{"row", "status", "output", "error"}`` per input row, in completion order). Needs Ray initialised."""
    import ray

    from pipelines.builder import PipelineBuilder

    PipelineBuilder(env=env).build(pipeline)  # fail fast, in the caller, on an invalid pipeline
    rows = read_rows(input_path)
    summary = BatchSummary(total=len(rows))
    started = time.perf_counter()
    ray.data.DataContext.get_current().enable_progress_bars = False
    dataset = ray.data.from_items([{"row": i, "raw": raw} for i, raw in enumerate(rows, start=1)])
    results = dataset.map_batches(
        PipelineWorker,
        fn_constructor_kwargs={"pipeline_json": pipeline.model_dump_json(), "env": env,
                               "threads": threads_per_worker},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, concurrency)),
        num_cpus=num_cpus,
    )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    last_report = 0.0
    with output_path.open("w", encoding="utf-8") as out:
        for batch in results.iter_batches(batch_format="numpy", batch_size=None):
            for row, status, output, error in zip(batch["row"], batch["status"], batch["output"], batch["error"]):
                record = {"row": int(row), "status": str(status), "output": json.loads(output),
                          "error": str(error) or None}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                summary.add(int(row), str(status), str(output), str(error))
            out.flush()
            summary.duration_s = time.perf_counter() - started
            if on_progress is not None and time.perf_counter() - last_report >= progress_every_s:
                last_report = time.perf_counter()
                on_progress(summary)
    summary.duration_s = time.perf_counter() - started
    summary.errors.sort(key=lambda e: e["row"])
    if on_progress is not None:
        on_progress(summary)
    return summary
