"""Entry point of one fine-tune, run as a Ray Job: ``python -m train.run --task-dir DIR``.

It reads ``DIR/task.json`` (written by the job manager), prepares the tokenized dataset on Ray Data, runs the
TorchTrainer, and leaves in ``DIR``: ``adapter/`` (PEFT format, with the tokenizer), ``metrics.jsonl``,
``status.json``, ``train.log`` and ``result.json``. It never touches the studio's database: the manager reads
these files and Ray's job status, so a fine-tune outlives a restart of the studio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from train.evaluation import default_eval_steps, summary
from train.loop import ProgressRecorder, TrainEvents, steps_plan, train_loop, training_dataset
from train.task_folder import HELD_OUT, RESULT, STATUS, TASK, adapter_dir, log, write_json
from train.validation import load_tokenizer


def run(task_dir: Path) -> dict:
    """Prepare data, train, export the adapter; returns what goes into result.json."""
    cfg = json.loads((task_dir / TASK).read_text())
    started = time.time()
    write_json(task_dir / STATUS, {"state": "preparing", "phase": "tokenizing the dataset", "updated_at": started})
    log(task_dir, f"task {cfg['task_id']}: model {cfg['model']}, dataset {cfg['dataset_id']} ({cfg['format']})",
        echo=True)
    ds, val, held_out_rows = training_dataset(Path(cfg["dataset_path"]), cfg["format"], cfg["model_path"],
                                              cfg["max_length"], cfg["seed"], cfg.get("column_mapping"),
                                              cfg.get("val_size") or 0.0)
    rows = ds.count()
    if rows < cfg["num_workers"]:
        raise ValueError(f"only {rows} usable rows after tokenization, fewer than the {cfg['num_workers']} workers")
    steps_per_epoch, total = steps_plan(rows, cfg["batch_size"], cfg["num_workers"], cfg["epochs"], cfg["max_steps"])
    cfg.update(steps_per_epoch=steps_per_epoch, total_steps=total, rows=rows)
    cfg["checkpoint_every"] = cfg.get("checkpoint_every") or max(1, total // 4)
    cfg["eval_rows"] = len(held_out_rows)
    cfg["eval_steps"] = cfg.get("eval_steps") or default_eval_steps(
        total, cfg["batch_size"] * cfg["num_workers"], len(held_out_rows))
    write_json(task_dir / HELD_OUT, {"val_size": cfg.get("val_size") or 0.0, "seed": cfg["seed"],
                                     "rows": held_out_rows})
    log(task_dir, f"{rows} rows, {steps_per_epoch} steps per epoch, {total} steps, {cfg['num_workers']} worker(s) "
                  f"× batch {cfg['batch_size']}, checkpoint every {cfg['checkpoint_every']}"
                  + (f"; {len(held_out_rows)} rows held out, eval every {cfg['eval_steps']} steps"
                     if held_out_rows else ""), echo=True)
    write_json(task_dir / STATUS, {"state": "preparing", "phase": "starting workers", "total_steps": total,
                                   "rows": rows, "updated_at": time.time()})
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    recorder = ray.remote(num_cpus=0)(ProgressRecorder).options(scheduling_strategy=here).remote(str(task_dir))
    resources = {**(cfg.get("worker_resources") or {}), "CPU": cfg["cpus_per_worker"]}
    if cfg["use_gpu"]:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={**cfg, "recorder": recorder},
        scaling_config=ScalingConfig(num_workers=cfg["num_workers"], use_gpu=cfg["use_gpu"],
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name="ray_train",
            storage_path=str(task_dir.resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=cfg["max_failures"]),
            callbacks=[TrainEvents(recorder)],
        ),
        datasets={"train": ds, **({"val": val} if val is not None else {})},
    )
    result = trainer.fit()
    ray.get(recorder.log.remote("training finished"))  # flushes the steps still queued at the recorder
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    adapter = adapter_dir(task_dir)
    shutil.rmtree(adapter, ignore_errors=True)
    with result.checkpoint.as_directory() as folder:
        shutil.copytree(folder, adapter, ignore=shutil.ignore_patterns("optimizer.pt", "trainer_state.json"))
    load_tokenizer(cfg["model_path"]).save_pretrained(adapter)
    metrics = result.metrics or {}
    evaluation = summary(metrics.get("base_eval_loss"), metrics.get("eval_loss"), metrics.get("eval_rows", 0))
    log(task_dir, f"completed: {metrics.get('step')} steps, last loss {metrics.get('loss')}, adapter in {adapter}"
        + (f"; held-out loss {evaluation['base']['loss']} (base) -> {evaluation['fine_tuned']['loss']} (fine-tuned) "
           f"on {evaluation['rows']} rows" if evaluation else ""), echo=True)
    return {"state": "completed", "adapter_path": str(adapter), "steps": metrics.get("step"),
            "final_loss": metrics.get("loss"), "rows": rows, "evaluation": evaluation,
            "seconds": round(time.time() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one SAGE Studio fine-tune (started by the job manager).")
    parser.add_argument("--task-dir", required=True, type=Path)
    parser.add_argument("--ray-address", default=None, help="GCS address of the cluster (default: RAY_ADDRESS).")
    args = parser.parse_args(argv)
    task_dir = args.task_dir
    ray.init(address=args.ray_address, log_to_driver=True)
    try:
        result = run(task_dir)
        code = 0
    except Exception as exc:  # noqa: BLE001 - whatever failed, the manager must read why
        traceback.print_exc()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result = {"state": "failed", "error": f"{type(exc).__name__}: {reason}"[:1000]}
        log(task_dir, f"failed: {result['error']}", echo=True)
        code = 1
    write_json(task_dir / RESULT, {**result, "finished_at": time.time()})
    return code


if __name__ == "__main__":
    sys.exit(main())
