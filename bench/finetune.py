"""The same LoRA steps through Ray Train (the studio's real path: Ray Data shard, TorchTrainer, progress actor)
and through a plain peft/transformers loop in this process; prints the steady-state step-time ratio and the
fixed start-up overhead of each, measured in the same run. Run:

    .venv/bin/python bench/finetune.py [--model SmolLM2-135M-Instruct] [--steps 20] [--batch-size 10] [--val-size 0.1]

Each Ray Train step is split into its wait for the batch (``data_s``: Ray Data shard + collate) and the rest, so a
gap to the plain loop shows where it goes. With ``--val-size`` the Ray side holds rows out and evaluates them every
``--eval-steps`` steps (default: what fits in 10% of the training time): it prints the eval passes' share of the training time, the
eval_loss points, and the base vs fine-tuned held-out loss.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
WARMUP_STEPS = 3


def make_rows(n: int) -> list[dict]:
    """Rows of near-equal token length, so both sides pad to the same shapes whatever the order."""
    words = "ray serve train data lora adapter gateway studio pipeline memory".split()
    return [{"instruction": "Repeat: " + " ".join(words[(i + k) % 10] for k in range(24)),
             "output": " ".join(words[(i + k) % 10] for k in range(24))} for i in range(n)]


def plain(cfg: dict, rows: list[dict]) -> tuple[float, list[float]]:
    """Start-up seconds (model + data ready) and per-step wall times of a one-process loop."""
    import torch

    from train.formats import encode_for_training, to_messages
    from train.loop import build_lora_model, lora_optimizer, lr_at, pad_collate, train_step
    from train.validation import load_tokenizer

    start = time.perf_counter()
    torch.set_num_threads(int(cfg["cpus_per_worker"]))
    tokenizer = load_tokenizer(cfg["model_path"])
    encoded = [encode_for_training(tokenizer, to_messages(r)[1], cfg["max_length"]) for r in rows]
    model = build_lora_model(cfg)
    optimizer = lora_optimizer(model, cfg)
    model.train()
    startup = time.perf_counter() - start
    times, last, bs = [], time.perf_counter(), cfg["batch_size"]
    for step in range(cfg["total_steps"]):
        chunk = [encoded[(step * bs + i) % len(encoded)] for i in range(bs)]
        batch = pad_collate({"input_ids": [c[0] for c in chunk], "labels": [c[1] for c in chunk]},
                            tokenizer.pad_token_id or 0)
        float(train_step(model, optimizer, batch, lr_at(step, cfg)))
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return startup, times


def through_ray(cfg: dict, rows: list[dict], workdir: Path) -> tuple[float, list[float]]:
    """Run ``train.run.run`` (what a studio Ray job runs) and read its per-step times back."""
    import ray

    from train.run import run

    task_dir = workdir / "task"
    task_dir.mkdir()
    data = workdir / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (task_dir / "task.json").write_text(json.dumps({**cfg, "dataset_path": str(data)}))
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        start = time.perf_counter()
        result = run(task_dir)
        wall = time.perf_counter() - start
    finally:
        ray.shutdown()
    steps = [json.loads(line) for line in (task_dir / "metrics.jsonl").read_text().splitlines()]
    return wall - sum(s["step_time_s"] + s.get("eval_time_s", 0) + s.get("base_eval_time_s", 0) for s in steps), \
        steps, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--val-size", type=float, default=0.0, help="Held-out fraction on the Ray side (0: no eval).")
    parser.add_argument("--eval-steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--ray-only", action="store_true", help="Skip the plain loop (e.g. for an eval run).")
    args = parser.parse_args()

    from sage_studio.model_store import resolve_model_path

    cpus = os.cpu_count() or 1
    rows = make_rows(round(args.steps * args.batch_size / (1 - args.val_size)))  # the same steps whatever is held out
    cfg = {"task_id": "bench", "model": args.model, "model_path": str(resolve_model_path(args.model)),
           "dataset_id": "bench", "format": "alpaca", "epochs": 1, "max_steps": args.steps,
           "batch_size": args.batch_size, "learning_rate": args.lr, "max_length": 256, "lora_r": 8, "lora_alpha": 16,
           "lora_dropout": 0.05, "target_modules": None, "num_workers": 1, "cpus_per_worker": cpus,
           "use_gpu": False, "checkpoint_every": args.steps, "max_failures": 0, "seed": 0,
           "steps_per_epoch": args.steps, "total_steps": args.steps,
           "val_size": args.val_size, "eval_steps": args.eval_steps}
    with tempfile.TemporaryDirectory() as tmp:
        ray_startup, steps, result = through_ray(cfg, rows, Path(tmp))
    ray_times = [s["step_time_s"] for s in steps]
    ray_step = statistics.median(ray_times[WARMUP_STEPS:])
    data_wait = statistics.median([s["data_s"] for s in steps[WARMUP_STEPS:]])
    print(f"{args.model}: {args.steps} LoRA steps × batch {args.batch_size}, 1 worker, {cpus} threads, "
          f"val_size {args.val_size}")
    print(f"ray train  : step {ray_step:.3f} s (median after {WARMUP_STEPS} warm-up; of which waiting for the batch "
          f"{data_wait:.3f} s), fixed overhead {ray_startup:.1f} s "
          "(Ray Data prep, trainer and worker start, final checkpoint and export)")
    evals = [s for s in steps if "eval_loss" in s]
    if evals:
        spent = sum(s["eval_time_s"] for s in evals)
        base = evals[-1].get("base_eval_time_s", 0)
        print(f"eval       : {len(evals)} eval_loss passes over {evals[-1]['eval_rows']} held-out rows, "
              f"{spent:.1f} s = "
              f"{100 * spent / sum(ray_times):.1f}% of the training steps' {sum(ray_times):.1f} s; the base model's "
              f"pass once after training {base:.1f} s ({100 * base / sum(ray_times):.1f}%)")
        print("eval_loss  : " + ", ".join(f"step {s['step']}: {s['eval_loss']:.4f}" for s in evals))
        print(f"evaluation : {json.dumps(result.get('evaluation'))}")
    print(f"train loss : {steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f}")
    if args.ray_only:
        return
    plain_startup, plain_times = plain(cfg, rows)
    plain_step = statistics.median(plain_times[WARMUP_STEPS:])
    print(f"plain loop : step {plain_step:.3f} s (median after {WARMUP_STEPS} warm-up), start-up {plain_startup:.1f} s")
    print(f"steady-state step ratio ray/plain = {ray_step / plain_step:.3f} (target <= 1.05 with eval off); "
          f"extra fixed start-up = {ray_startup - plain_startup:.1f} s")


if __name__ == "__main__":
    main()
