"""Batch throughput of a pipeline on Ray Data against a plain in-process loop over the same rows (the baseline).

    python bench/pipelines_batch.py --rows 2000 --actors 2

The pipeline is a BM25 retrieval check over the bundled docs with a recall evaluator (no LLM, so the numbers measure
the pipeline machinery and Ray Data, not a model). Both runs use the same built-pipeline code path.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from pipelines import PipelineBuilder, PipelineRunner, VisualPipeline
from pipelines.batch import run_batch
from pipelines.operators.base import OperatorEnv


def bench_pipeline() -> VisualPipeline:
    return VisualPipeline.model_validate({
        "name": "bench: bm25 recall",
        "nodes": [
            {"id": "q", "type": "text_input", "config": {"field": "question"}},
            {"id": "ref", "type": "text_input", "config": {"field": "answer"}},
            {"id": "docs", "type": "file_source", "config": {"folder": "docs", "path": "*.md"}},
            {"id": "chunks", "type": "chunker", "config": {"chunk_size": 400, "overlap": 40}},
            {"id": "ret", "type": "retriever", "config": {"top_k": 2, "method": "bm25"}},
            {"id": "recall", "type": "recall_evaluator"},
        ],
        "connections": [["docs", "chunks"], {"source": "chunks", "target": "ret", "target_port": "documents"},
                        {"source": "q", "target": "ret", "target_port": "query"},
                        {"source": "ret", "target": "recall", "target_port": "prediction"},
                        {"source": "ref", "target": "recall", "target_port": "reference"}],
    })


QUESTIONS = [("What is the default port?", "8000"), ("Where is data kept?", "SAGE_HOME"),
             ("Which backend recalls by keyword?", "kv"), ("What trains the LoRA adapter?", "peft")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per Ray Data batch")
    args = parser.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="sage-bench-"))
    os.environ.setdefault("SAGE_HOME", str(work / "home"))
    env = OperatorEnv.from_environment()
    pipeline = bench_pipeline()
    rows = [{"question": f"{q} ({i})", "answer": a} for i, (q, a) in
            ((i, QUESTIONS[i % len(QUESTIONS)]) for i in range(args.rows))]
    inputs = work / "rows.jsonl"
    inputs.write_text("".join(json.dumps(r) + "\n" for r in rows))

    started = time.perf_counter()
    runner = PipelineRunner(PipelineBuilder(env=env).build(pipeline))
    baseline_ok = sum(runner.run(r).status == "ok" for r in rows)
    baseline_s = time.perf_counter() - started

    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        started, first = time.perf_counter(), []

        def progress(s):
            if s.done and not first:
                first.append(time.perf_counter() - started)

        summary = run_batch(pipeline, inputs, work / "out.jsonl", env, concurrency=args.actors,
                            batch_size=args.batch_size, on_progress=progress, progress_every_s=0.0)
        ray_s = time.perf_counter() - started
    finally:
        ray.shutdown()

    print(f"rows: {args.rows}  actors: {args.actors}  cpus: {args.cpus}")
    print(f"in-process loop (baseline): {baseline_s:6.2f} s  {args.rows / baseline_s:8.1f} rows/s  ok={baseline_ok}")
    print(f"Ray Data batch:             {ray_s:6.2f} s  {args.rows / ray_s:8.1f} rows/s  ok={summary.done - summary.failed}"
          f"  first rows after {first[0]:.2f} s (actor start-up)  metrics={summary.metrics}")
    print(f"ratio Ray Data / baseline throughput: {baseline_s / ray_s:.2f}x end to end, "
          f"{baseline_s / (ray_s - first[0]):.2f}x after actor start-up")


if __name__ == "__main__":
    main()
