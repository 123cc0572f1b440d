"""Validate a generated 1,000,000-row JSONL on Ray Data vs a plain-Python ``json`` loop doing the same checks.

Both sides parse every row, check its fields, render it with the model's chat template and count its tokens
(batched, like the Ray side). Printed: rows/s and peak memory (PSS, so the object store's shared pages are not
counted twice) of each, and their ratios. Run:

    .venv/bin/python bench/dataset_validation.py [--rows 1000000] [--model SmolLM2-135M-Instruct]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import psutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Alpaca rows of varied lengths, 0.1% of them broken in the usual ways."""
    rng = random.Random(seed)
    words = "the model learns to answer questions about ray serve train data pipelines and adapters".split()
    with open(path, "w") as f:
        for i in range(rows):
            if i % 1000 == 999:
                f.write(["{not json", json.dumps({"instruction": 5, "output": "x"}), json.dumps([1])][i % 3] + "\n")
                continue
            n = rng.randint(5, 60)
            row = {"instruction": " ".join(rng.choices(words, k=n)), "input": "",
                   "output": " ".join(rng.choices(words, k=rng.randint(3, 40)))}
            f.write(json.dumps(row) + "\n")


class PeakMemory:
    """Samples the PSS of this process and all its descendants (Ray's workers are) every second: reading smaps of
    ~20 Ray processes 5 times a second took CPU from the side being measured."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> "PeakMemory":
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def baseline(path: Path, model_path: str) -> tuple[int, int]:
    """The plain way: one process, ``json.loads`` per line, the same checks and token counting."""
    from train.formats import RowError, count_tokens, render, to_messages
    from train.validation import counting_tokenizer

    tokenizer = counting_tokenizer(model_path)
    valid = invalid = 0
    pending: list[list[dict]] = []
    lengths: list[int] = []

    def flush() -> None:
        lengths.extend(count_tokens(tokenizer, render(tokenizer, pending)))
        pending.clear()

    with open(path, "rb") as f:
        for line in f:
            try:
                _, messages = to_messages(json.loads(line))
                pending.append(messages)
                valid += 1
            except (ValueError, RowError):
                invalid += 1
            if len(pending) >= 4096:
                flush()
    flush()
    return valid, invalid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    args = parser.parse_args()

    import ray

    from sage_studio.model_store import resolve_model_path
    from train.validation import validate_dataset

    model_path = str(resolve_model_path(args.model))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.jsonl"
        t = time.perf_counter()
        generate(data, args.rows)
        size = data.stat().st_size
        print(f"generated {args.rows:,} rows, {size / 1e6:.0f} MB in {time.perf_counter() - t:.1f} s")

        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        small = Path(tmp) / "warm.jsonl"
        generate(small, 20_000)
        validate_dataset(small, model_path, args.model)  # start the check workers: not part of the measurement
        idle = PeakMemory.now()
        with PeakMemory() as mem:
            t = time.perf_counter()
            report = validate_dataset(data, model_path, args.model)
            ray_s = time.perf_counter() - t
        ray_peak = mem.peak
        ray.shutdown()
        assert report.rows_total == args.rows, report.rows_total

        with PeakMemory() as mem:
            t = time.perf_counter()
            valid, invalid = baseline(data, model_path)
            base_s = time.perf_counter() - t
        assert valid == report.rows_valid, (valid, report.rows_valid)

    print(f"ray data : {args.rows / ray_s:>10,.0f} rows/s  {ray_s:6.1f} s  peak {ray_peak / 1e6:6.0f} MB "
          f"(+{(ray_peak - idle) / 1e6:.0f} MB over the idle cluster)  valid {report.rows_valid:,}")
    print(f"baseline : {args.rows / base_s:>10,.0f} rows/s  {base_s:6.1f} s  peak {mem.peak / 1e6:6.0f} MB  "
          f"valid {valid:,}")
    print(f"speed-up {base_s / ray_s:.2f}x; Ray peak / file size {ray_peak / size:.2f}; "
          f"p50/p95/max tokens {report.tokens.p50}/{report.tokens.p95}/{report.tokens.max}")


if __name__ == "__main__":
    main()
