"""The Ray Train side of a fine-tune: the tokenized dataset, the per-worker LoRA loop, and the progress callback.

``train_loop`` runs on every TorchTrainer worker. It resumes from ``ray.train.get_checkpoint()`` (adapter weights,
optimizer state and the step reached), so when a worker dies and ``FailureConfig`` restarts the group, training
goes on from the last checkpoint instead of from scratch. Progress is reported with ``ray.train.report`` and
written to the task folder by ``ProgressCallback``, which runs in the Train controller on the driver's node.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import ray.train
import ray.train.torch
from ray.train import Checkpoint, UserCallback

from train import task_folder
from train.evaluation import HeldOut, held_out_loss, split_held_out, split_key
from train.formats import encode_for_training
from train.readers import data_kind, read_rows
from train.validation import bounded, check_batch, check_pool, load_tokenizer

DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


def _tokenize_batch(batch: pa.Table, fmt: str, model_path: str, max_length: int, seed: int) -> dict[str, np.ndarray]:
    tokenizer = load_tokenizer(model_path)
    rows, keys, ids, labels = [], [], [], []
    for row, row_fmt, text in zip(batch.column("row").to_pylist(), batch.column("format").to_pylist(),
                                  batch.column("messages").to_pylist()):
        if row_fmt != fmt or text is None:
            continue  # invalid rows and rows of another format were reported at upload and are left out
        i, lab = encode_for_training(tokenizer, json.loads(text), max_length)
        if any(x != -100 for x in lab):  # an answer cut off entirely by max_length teaches nothing
            rows.append(row)
            keys.append(split_key(seed, row, text))
            ids.append(np.asarray(i, dtype=np.int64))
            labels.append(np.asarray(lab, dtype=np.int64))
    out = np.empty(len(ids), dtype=object), np.empty(len(ids), dtype=object)
    out[0][:] = ids
    out[1][:] = labels
    return {"row": np.asarray(rows, dtype=np.int64), "split_key": np.asarray(keys, dtype=np.int64),
            "input_ids": out[0], "labels": out[1]}


def training_dataset(path: Path, fmt: str, model_path: str, max_length: int, seed: int,
                     columns: dict[str, str] | None = None, val_size: float = 0.0):
    """(training rows, held-out rows or None, held-out row numbers): the valid rows of the dataset's format,
    tokenized with assistant-only labels; ``val_size`` of them held out (``train.evaluation.split_held_out``), the
    rest shuffled once; both materialized. ``columns`` is the column mapping the upload was validated with.

    Materializing before the trainer starts matters on small clusters: Ray Data then needs no CPU while the
    training workers hold them all, and every epoch (and every resume) reads the same tokenized rows.
    """
    ds = bounded(read_rows(path)).map_batches(
        check_batch, batch_format="pyarrow", batch_size=None, compute=check_pool(),
        fn_kwargs={"model_path": None, "max_row_bytes": 1 << 20, "keep_messages": True,
                   "tabular": data_kind(path) != "jsonl", "columns": columns or None},
    )
    ds = ds.map_batches(
        _tokenize_batch, batch_format="pyarrow", batch_size=256, compute=check_pool(),
        fn_kwargs={"fmt": fmt, "model_path": model_path, "max_length": max_length, "seed": seed},
    )
    return split_held_out(ds, val_size, seed)


def pad_collate(batch: dict[str, np.ndarray], pad_id: int) -> dict[str, Any]:
    """Pad a batch of variable-length rows to its longest row (labels padded with -100, masked in attention)."""
    import torch

    longest = max(len(x) for x in batch["input_ids"])
    n = len(batch["input_ids"])
    input_ids = torch.full((n, longest), pad_id, dtype=torch.long)
    labels = torch.full((n, longest), -100, dtype=torch.long)
    attention = torch.zeros((n, longest), dtype=torch.long)
    for row, (ids, lab) in enumerate(zip(batch["input_ids"], batch["labels"])):
        input_ids[row, : len(ids)] = torch.as_tensor(ids)
        labels[row, : len(lab)] = torch.as_tensor(lab)
        attention[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def build_lora_model(cfg: dict[str, Any], device=None):
    """The base model with a fresh LoRA adapter (peft), in float32 on CPU and bfloat16 on GPU."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device is not None and device.type == "cuda" else torch.float32
    torch.manual_seed(cfg["seed"])
    model = AutoModelForCausalLM.from_pretrained(cfg["model_path"], dtype=dtype)
    lora = LoraConfig(
        r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
        target_modules=cfg.get("target_modules") or DEFAULT_TARGET_MODULES, task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def lr_at(step: int, cfg: dict[str, Any]) -> float:
    """Linear warm-up over the first 5% of steps, then linear decay to 10% of the peak."""
    total, peak = max(1, cfg["total_steps"]), cfg["learning_rate"]
    warm = max(1, int(0.05 * total))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * max(0.1, 1 - (step - warm) / max(1, total - warm))


def lora_optimizer(model, cfg: dict[str, Any]):
    """AdamW over the trainable (LoRA) parameters, at the peak learning rate, no weight decay."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg["learning_rate"], weight_decay=0.0)


def train_step(model, optimizer, batch: dict[str, Any], lr: float):
    """One optimizer step at ``lr``: forward, backward, gradients clipped to norm 1; the batch's loss, detached."""
    import torch

    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def _save_checkpoint(model, optimizer, step: int, epoch: int, folder: str) -> None:
    import torch

    inner = getattr(model, "module", model)  # unwrap DDP
    inner.save_pretrained(folder)
    torch.save(optimizer.state_dict(), os.path.join(folder, "optimizer.pt"))
    with open(os.path.join(folder, "trainer_state.json"), "w") as f:
        json.dump({"step": step, "epoch": epoch}, f)


def train_loop(cfg: dict[str, Any]) -> None:
    """One Train worker: LoRA fine-tune on its dataset shard, checkpoint every ``checkpoint_every`` steps."""
    import torch
    import torch.distributed as dist
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    # Ray sets OMP_NUM_THREADS=1 in workers; give torch the cores this worker reserved.
    torch.set_num_threads(max(1, min(int(cfg["cpus_per_worker"]), os.cpu_count() or 1)))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    tokenizer = load_tokenizer(cfg["model_path"])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
    model = build_lora_model(cfg, device)
    start_step = 0
    checkpoint = ray.train.get_checkpoint()
    state_files = None
    if checkpoint:
        with checkpoint.as_directory() as folder:
            set_peft_model_state_dict(model, load_file(os.path.join(folder, "adapter_model.safetensors")))
            state_files = torch.load(os.path.join(folder, "optimizer.pt"), map_location="cpu")
            with open(os.path.join(folder, "trainer_state.json")) as f:
                start_step = json.load(f)["step"]
    model = ray.train.torch.prepare_model(model)
    optimizer = lora_optimizer(model, cfg)
    if state_files is not None:
        optimizer.load_state_dict(state_files)
    if rank == 0 and start_step:
        print(f"[sage] resumed from the checkpoint at step {start_step}", flush=True)
    model.train()
    recorder = cfg["recorder"]
    shard = ray.train.get_dataset_shard("train")
    steps_per_epoch, total = cfg["steps_per_epoch"], cfg["total_steps"]
    held_out = None
    if cfg.get("eval_rows"):
        held_out = HeldOut(ray.train.get_dataset_shard("val"), cfg["batch_size"],
                           lambda b: pad_collate(b, pad_id), device)
    step = start_step
    last = time.perf_counter()
    for epoch in range(start_step // steps_per_epoch, cfg["epochs"]):
        batches = shard.iter_torch_batches(
            batch_size=cfg["batch_size"], collate_fn=lambda b: pad_collate(b, pad_id), device=device
        )
        for i, batch in enumerate(batches):
            if epoch * steps_per_epoch + i < step:
                continue  # done before the restart: the checkpoint already holds these updates
            if step >= total or i >= steps_per_epoch:
                break
            fetched = time.perf_counter()  # the wait for the batch (Ray Data + collate) is part of the step's time
            value = train_step(model, optimizer, batch, lr_at(step, cfg))
            step += 1
            if world > 1:
                dist.all_reduce(value)
                value /= world
            now = time.perf_counter()
            metrics = {
                "step": step, "total_steps": total, "epoch": round(epoch + (i + 1) / steps_per_epoch, 4),
                "loss": round(float(value), 5), "lr": optimizer.param_groups[0]["lr"],
                "step_time_s": round(now - last, 4), "data_s": round(fetched - last, 4),
                "tokens": int(batch["attention_mask"].sum()),
                "resumed_from": start_step, "worker_pid": os.getpid(),
            }
            if held_out is not None and (step % cfg["eval_steps"] == 0 or step == total):
                metrics.update(_evaluate(model, held_out, world, final=step == total))
                now = time.perf_counter()  # the next step's time leaves the eval pass out
            last = now
            checkpointing = step % cfg["checkpoint_every"] == 0 or step == total
            if rank == 0:
                recorder.record.remote({**metrics, "checkpoint": checkpointing})
            if checkpointing:  # every worker reports at the same steps: report() is a barrier across the group
                with tempfile.TemporaryDirectory() as folder:
                    if rank == 0:
                        _save_checkpoint(model, optimizer, step, epoch, folder)
                    ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder) if rank == 0 else None)
        if step >= total:
            break


def _evaluate(model, held_out, world: int, final: bool) -> dict[str, Any]:
    """eval_loss on the held-out rows; after the last step also the base model's (the adapter disabled)."""
    inner = getattr(model, "module", model)  # unwrap DDP: no gradient sync in a forward-only pass
    began = time.perf_counter()
    loss, rows = held_out_loss(inner, held_out, world)
    out = {"eval_loss": round(loss, 5), "eval_rows": rows, "eval_time_s": round(time.perf_counter() - began, 4)}
    if final:
        began = time.perf_counter()
        with inner.disable_adapter():
            out["base_eval_loss"] = round(held_out_loss(inner, held_out, world)[0], 5)
        out["base_eval_time_s"] = round(time.perf_counter() - began, 4)
    return out


def steps_plan(rows: int, batch_size: int, num_workers: int, epochs: int, max_steps: int | None) -> tuple[int, int]:
    """(steps per epoch, total steps): each worker gets rows // num_workers rows (equal shards)."""
    per_worker = rows // num_workers
    steps_per_epoch = max(1, math.ceil(per_worker / batch_size))
    total = steps_per_epoch * epochs
    return steps_per_epoch, min(total, max_steps) if max_steps else total


class ProgressRecorder:
    """A small actor on the driver's node that writes ``metrics.jsonl``, ``status.json`` and ``train.log``.

    Rank 0 sends it every step without waiting. ``ray.train.report`` is kept for checkpoints only: it blocks
    until the controller has taken the previous report (it polls every 2 s), which would stall short steps.
    """

    def __init__(self, task_dir: str):
        self.task_dir = Path(task_dir)
        self.started = None
        self.first_step = 0
        self.failures = 0
        self.last_checkpoint_step = 0
        self.status: dict[str, Any] = {}

    def _write_status(self, **status: Any) -> None:
        self.status = status
        task_folder.write_json(self.task_dir / task_folder.STATUS, {
            **status, "updated_at": time.time(), "failures": self.failures,
            "last_checkpoint_step": self.last_checkpoint_step})

    def log(self, line: str) -> None:
        task_folder.log(self.task_dir, line, echo=True)  # echoed: the Ray job's log has it as well

    def record(self, m: dict[str, Any]) -> None:
        now = time.time()
        if self.started is None or m["step"] <= self.first_step:
            self.started, self.first_step = now, m["step"] - 1  # (re)start: the ETA counts from here
        done = m["step"] - self.first_step
        rate = (now - self.started) / (done - 1) if done > 1 else m.get("step_time_s", 0)
        m = {**m, "eta_s": round(rate * (m["total_steps"] - m["step"]), 1), "time": now}
        with open(self.task_dir / task_folder.METRICS, "a") as f:
            f.write(json.dumps(m) + "\n")
        self._write_status(state="training", **m)
        self.log(
            f"step {m['step']}/{m['total_steps']} epoch {m['epoch']:.2f} loss {m['loss']:.4f} "
            f"lr {m['lr']:.2e} eta {m['eta_s']:.0f}s" + (f" eval_loss {m['eval_loss']:.4f}" if "eval_loss" in m else "")
            + (" [checkpoint saved]" if m.get("checkpoint") else "")
        )

    def checkpointed(self, step: int) -> None:
        self.last_checkpoint_step = max(self.last_checkpoint_step, step)
        if self.status:
            self._write_status(**self.status)

    def failure(self, rank: int, error: str) -> None:
        self.failures += 1
        self.started = None
        self.log(f"worker {rank} failed: {error[:300]}; restarting from the last checkpoint")


class TrainEvents(UserCallback):
    """Runs in the Train controller: tells the recorder when a checkpoint is registered (resumable from then on)
    and when a worker fails (the group restarts from the last registered checkpoint)."""

    def __init__(self, recorder):
        self.recorder = recorder

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        if checkpoint is not None:
            self.recorder.checkpointed.remote(int(metrics[0]["step"]))

    def after_exception(self, run_context, worker_exceptions: dict[int, Exception]) -> None:
        for rank, exc in worker_exceptions.items():
            self.recorder.failure.remote(rank, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
