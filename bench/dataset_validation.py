"""Validate a generated 1,000,000-row dataset on Ray Data vs a plain-Python loop doing the same checks, as JSON
Lines and as Parquet (the same rows).

Both sides parse every row (``json.loads`` per line; pyarrow batches of a Parquet file), check its fields, render
it with the model's chat template and count its tokens (batched, like the Ray side). Printed per format: rows/s and
peak memory (PSS, so the object store's shared pages are not counted twice) of each, and their ratios, then
Parquet against JSON Lines on Ray. Run:

    .venv/bin/python bench/dataset_validation.py [--rows 1000000] [--model SmolLM2-135M-Instruct] [--formats jsonl,parquet]
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


def _rows(rows: int, seed: int = 0):
    """Alpaca rows of varied lengths; None marks the 0.1% that are broken (written as each format can break)."""
    rng = random.Random(seed)
    words = "the model learns to answer questions about ray serve train data pipelines and adapters".split()
    for i in range(rows):
        if i % 1000 == 999:
            yield i, None
            continue
        n = rng.randint(5, 60)
        yield i, {"instruction": " ".join(rng.choices(words, k=n)), "input": "",
                  "output": " ".join(rng.choices(words, k=rng.randint(3, 40)))}


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """JSON Lines, the broken rows in the usual ways (not JSON, a number for a string, not an object)."""
    with open(path, "w") as f:
        for i, row in _rows(rows, seed):
            if row is None:
                f.write(["{not json", json.dumps({"instruction": 5, "output": "x"}), json.dumps([1])][i % 3] + "\n")
            else:
                f.write(json.dumps(row) + "\n")


def generate_parquet(path: Path, rows: int, seed: int = 0) -> None:
    """The same rows as Parquet (row groups of 64k, as pyarrow and datasets write), broken ones with no output."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        chunk: list[dict] = []
        for _, row in _rows(rows, seed):
            chunk.append(row or {"instruction": "broken", "input": "", "output": None})
            if len(chunk) == 1 << 16:
                writer.write_table(pa.Table.from_pylist(chunk, schema))
                chunk.clear()
        if chunk:
            writer.write_table(pa.Table.from_pylist(chunk, schema))


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


def _records(path: Path):
    """The rows of the file the plain way: ``json.loads`` per line, or pyarrow's Parquet batches."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            yield from batch.to_pylist()
        return
    with open(path, "rb") as f:
        for line in f:
            try:
                yield json.loads(line)
            except ValueError:
                yield None


def baseline(path: Path, model_path: str) -> tuple[int, int]:
    """The plain way: one process, the rows read one by one, the same checks and token counting."""
    from train.formats import RowError, count_tokens, render, to_messages
    from train.validation import counting_tokenizer

    tokenizer = counting_tokenizer(model_path)
    valid = invalid = 0
    pending: list[list[dict]] = []
    lengths: list[int] = []

    def flush() -> None:
        lengths.extend(count_tokens(tokenizer, render(tokenizer, pending)))
        pending.clear()

    for record in _records(path):
        try:
            if record is None:
                raise RowError("not valid JSON")
            _, messages = to_messages(record)
            pending.append(messages)
            valid += 1
        except (ValueError, RowError):
            invalid += 1
        if len(pending) >= 4096:
            flush()
    flush()
    return valid, invalid


def measure(data: Path, model_path: str, model: str) -> dict:
    """One format: Ray Data's validation (on the connected cluster), then the baseline loop, same file."""
    import ray

    from train.validation import validate_dataset

    idle = PeakMemory.now()
    with PeakMemory() as mem:
        t = time.perf_counter()
        report = validate_dataset(data, model_path, model)
        ray_s = time.perf_counter() - t
    ray_peak = mem.peak
    ray.shutdown()  # the baseline runs alone, as a user's script would
    with PeakMemory() as mem:
        t = time.perf_counter()
        valid, _ = baseline(data, model_path)
        base_s = time.perf_counter() - t
    assert valid == report.rows_valid, (valid, report.rows_valid)
    return {"ray_s": ray_s, "ray_peak": ray_peak, "idle": idle, "base_s": base_s, "base_peak": mem.peak,
            "report": report, "size": data.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--formats", default="jsonl,parquet", help="Comma-separated: jsonl, parquet.")
    args = parser.parse_args()

    import ray

    from sage_studio.model_store import resolve_model_path
    from train.validation import validate_dataset

    model_path = str(resolve_model_path(args.model))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.formats.split(","):
            data = Path(tmp) / f"rows.{kind}"
            t = time.perf_counter()
            (generate_parquet if kind == "parquet" else generate)(data, args.rows)
            print(f"{kind}: generated {args.rows:,} rows, {data.stat().st_size / 1e6:.0f} MB in "
                  f"{time.perf_counter() - t:.1f} s")
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            warm = Path(tmp) / f"warm.{kind}"
            (generate_parquet if kind == "parquet" else generate)(warm, 20_000)
            validate_dataset(warm, model_path, args.model)  # start the check workers: not part of the measurement
            results[kind] = r = measure(data, model_path, args.model)
            report = r["report"]
            assert report.rows_total == args.rows, report.rows_total
            print(f"{kind:8} ray data : {args.rows / r['ray_s']:>9,.0f} rows/s {r['ray_s']:6.1f} s  peak "
                  f"{r['ray_peak'] / 1e6:5.0f} MB (+{(r['ray_peak'] - r['idle']) / 1e6:.0f} MB over the idle cluster)"
                  f"  valid {report.rows_valid:,}")
            print(f"{kind:8} baseline : {args.rows / r['base_s']:>9,.0f} rows/s {r['base_s']:6.1f} s  peak "
                  f"{r['base_peak'] / 1e6:5.0f} MB")
            print(f"{kind:8} speed-up {r['base_s'] / r['ray_s']:.2f}x; Ray peak / file size "
                  f"{r['ray_peak'] / r['size']:.2f}; p50/p95/max tokens "
                  f"{report.tokens.p50}/{report.tokens.p95}/{report.tokens.max}")
    if {"jsonl", "parquet"} <= results.keys():
        j, p = results["jsonl"], results["parquet"]
        print(f"parquet vs jsonl on Ray: {j['ray_s'] / p['ray_s']:.2f}x the speed, "
              f"{(p['ray_peak'] - p['idle']) / max(1, j['ray_peak'] - j['idle']):.2f}x the memory over the idle "
              f"cluster; file {p['size'] / j['size']:.2f}x the size")


if __name__ == "__main__":
    main()
