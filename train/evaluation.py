"""Held-out evaluation of a fine-tune: which rows are held out (on Ray Data), and their loss (on Ray Train).

The split is by row, deterministic for a given file and seed: each tokenized row gets a key hashed from the seed,
its row number in the file and its content, the rows are sorted by it on Ray Data and the first
``held_out_count`` rows are held out. Block layout, parallelism and the order in which Ray Data's tasks finish never change which rows those
are, and the held-out rows never reach the training shard.

The workers compute the loss on their shard of the held-out rows every ``eval_steps`` steps (summed over label
tokens and all-reduced, so it is the token-weighted mean over all held-out rows whatever the worker count). After
the last step they compute it once more with the adapter disabled: the base model on the same rows.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from sage_studio.errors import StudioError

MAX_VAL_SIZE = 0.5
DEFAULT_VAL_SIZE = 0.1
MIN_ROWS_FOR_DEFAULT_VAL = 50  # below this every row is worth more as training data than as a loss estimate
CACHE_TOKENS = 4_000_000  # held-out sets up to this many tokens stay in the worker's memory between passes


def held_out_count(rows: int, val_size: float) -> int:
    """How many of ``rows`` rows a fraction ``val_size`` holds out (at least one when it is not 0)."""
    return 0 if val_size <= 0 or rows <= 0 else max(1, round(rows * val_size))


def resolve_val_size(val_size: float | None, rows: int, num_workers: int) -> float:
    """The fraction a fine-tune holds out: as asked, or by default 0.1 with >= 50 rows and 0 below.
    ``StudioError(422)`` when it would leave fewer training rows than workers (no training at all)."""
    if val_size is None:
        return DEFAULT_VAL_SIZE if rows >= MIN_ROWS_FOR_DEFAULT_VAL else 0.0
    held = held_out_count(rows, val_size)
    if rows - held < max(1, num_workers):
        raise StudioError(422, f"val_size {val_size} holds out {held} of the dataset's {rows} valid rows, which "
                               f"leaves {rows - held} for training, fewer than the {num_workers} worker(s): "
                               "lower val_size (0 holds out nothing).")
    return val_size


EVAL_BUDGET = 0.10  # the share of the training time the default evaluation schedule may take, base pass included
FORWARD_SHARE = 0.5  # a forward pass over a row costs about half a LoRA training step on it (bench/finetune.py)
MAX_DEFAULT_PASSES = 4  # a curve to read; more points only when asked for with eval_steps


def default_eval_steps(total_steps: int, rows_per_step: int, held_out_rows: int) -> int:
    """Steps between evaluations when ``eval_steps`` is not given: as many passes over the held-out rows (up to
    four, the last at the last step) as fit in ``EVAL_BUDGET`` of the training time beside the base model's pass;
    at least the one at the last step, which ``evaluation`` needs. A pass costs ``FORWARD_SHARE`` of a training step
    per row, so at val_size 0.1 a 1-epoch run gets only that one, 2 epochs two, 3 epochs four."""
    trained = total_steps * rows_per_step
    affordable = math.floor(EVAL_BUDGET * trained / (FORWARD_SHARE * max(1, held_out_rows))) - 1  # - the base pass
    passes = max(1, min(MAX_DEFAULT_PASSES, affordable))
    return max(1, math.ceil(total_steps / passes))


def split_key(seed: int, row: int, text: str) -> int:
    """The row's place in the held-out order: a hash of the seed, its row number and its content (tabular files
    number rows per block, so the number alone may repeat)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{row}:{text}".encode(), digest_size=8).digest(), "big") >> 1


def split_held_out(ds, val_size: float, seed: int):
    """(training rows, held-out rows or None, held-out row numbers) of a tokenized dataset with ``row`` and
    ``split_key`` columns. The training rows are shuffled once with ``seed`` and both parts are materialized."""
    n_val = held_out_count(ds.count(), val_size)
    if n_val == 0:
        return ds.drop_columns(["split_key"]).random_shuffle(seed=seed).materialize(), None, []
    val, train = ds.sort("split_key").materialize().split_at_indices([n_val])
    val, train = val.drop_columns(["split_key"]).materialize(), train.drop_columns(["split_key"])
    rows = sorted(int(r) for r in val.to_pandas()["row"])
    return train.random_shuffle(seed=seed).materialize(), val, rows


class HeldOut:
    """One worker's shard of the held-out rows; the first pass reads it from Ray Data, later passes reuse the
    padded batches while they are small (an eval pass then costs only the forward passes)."""

    def __init__(self, shard, batch_size: int, collate, device):
        self.shard, self.batch_size, self.collate, self.device = shard, batch_size, collate, device
        self.cached: list[dict[str, Any]] | None = None

    def batches(self):
        if self.cached is not None:
            return iter(self.cached)
        return self._read()

    def _read(self):
        kept, tokens = [], 0
        for batch in self.shard.iter_torch_batches(batch_size=self.batch_size, collate_fn=self.collate,
                                                   device=self.device):
            tokens += batch["input_ids"].numel()
            if kept is not None:
                kept = kept + [batch] if tokens <= CACHE_TOKENS else None
            yield batch
        self.cached = kept


def held_out_loss(model, held_out: HeldOut, world: int) -> tuple[float, int]:
    """(mean loss per label token, rows) over every worker's held-out shard; every worker must call it."""
    import torch
    import torch.distributed as dist

    was_training = model.training
    model.eval()
    total = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for batch in held_out.batches():
            tokens = int((batch["labels"][:, 1:] != -100).sum())  # the label tokens HF's shifted loss averages over
            if tokens:
                total += torch.tensor([float(model(**batch).loss) * tokens, tokens, len(batch["labels"])],
                                      dtype=torch.float64)
    if world > 1:
        dist.all_reduce(total)
    if was_training:
        model.train()
    loss_sum, tokens, rows = total.tolist()
    return (loss_sum / tokens if tokens else float("nan")), int(rows)


def summary(base_loss: float | None, tuned_loss: float | None, rows: int) -> dict[str, Any] | None:
    """What a completed task's ``evaluation`` holds, or None when nothing was held out."""
    if not rows or base_loss is None or tuned_loss is None:
        return None

    def one(loss: float) -> dict[str, float]:
        return {"loss": round(loss, 5), "perplexity": round(math.exp(min(loss, 700.0)), 4)}

    return {"base": one(base_loss), "fine_tuned": one(tuned_loss), "rows": rows}
