"""Dataset validation on Ray Data: per-batch checks over a streamed dataset, and the report they add up to.

The stored file is read by ``train.readers`` (JSON Lines in 1 MiB chunks by one read task, so every row keeps its
line number; Parquet, CSV/TSV and Arrow by Ray Data's readers, in order), the checks run as ``map_batches`` tasks
in parallel and fold each block into a summary, and the driver merges the summaries. Memory stays bounded by the
block size, not the file size: a 50 MB single JSON line is cut off at ``max_row_bytes`` and reported, never held.
A column mapping (canonical field → column, ``train.formats.detect_columns``) renames each row's fields first.
"""

from __future__ import annotations

import heapq
import json
import os
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, Field

from train.formats import RowError, apply_columns, count_tokens, render, to_messages
from train.readers import DEFAULT_MAX_ROW_BYTES, data_kind, read_rows

PREVIEW_SCAN_ROWS = 200


def bounded(ds, block_bytes: int = 2 << 20, object_store_bytes: int = 64 << 20):
    """Keep a dataset's memory bounded whatever the file size: small blocks (Ray's default target is 128 MiB, which
    would turn a whole upload into one block; at 8 MiB a 1M-row file made 42 blocks of ~24k rows, 7 s of checks
    each, and the last one ran alone) and a cap on what may wait in the object store, so the reader pauses when
    the checks fall behind instead of loading the file (64 MiB still queues ~30 blocks ahead of them)."""
    from ray.data import ExecutionResources

    ctx = ds.context
    ctx.target_max_block_size = block_bytes
    ctx.execution_options.resource_limits = ExecutionResources(object_store_memory=object_store_bytes)
    return ds


def check_pool():
    """At most one check task per physical core of this node: the logical CPUs of a laptop cluster are often
    set higher than its cores, and each extra task would only import transformers again for nothing."""
    import ray
    from ray.data import TaskPoolStrategy

    cores = os.cpu_count() or 1
    return TaskPoolStrategy(size=max(1, min(cores, int(ray.cluster_resources().get("CPU", 1)))))


@lru_cache(maxsize=4)
def load_tokenizer(model_path: str):
    """The model's tokenizer, once per worker process (Ray reuses workers across tasks, so this cache pays off)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


@lru_cache(maxsize=4)
def counting_tokenizer(model_path: str):
    """The tokenizer the checks count tokens and render the chat template with, without importing torch.

    ``AutoTokenizer`` imports transformers' generation code and with it torch: ~500 MB more in every check worker,
    only to choose a class. A model folder with a ``tokenizer.json`` loads as the generic fast tokenizer (same
    vocabulary, special tokens and chat template); one without it goes through ``AutoTokenizer``.
    """
    if not (Path(model_path) / "tokenizer.json").is_file():
        return load_tokenizer(model_path)
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(model_path)


def _decode_error(exc: UnicodeDecodeError) -> str:
    bad = exc.object[exc.start : exc.start + 1].hex()
    return f"not valid UTF-8 (byte 0x{bad} at position {exc.start}); save the file as UTF-8"


def _records(batch: pa.Table, tabular: bool):
    """(row number, raw JSON bytes or the record itself, size) per row; a tabular block numbers its rows from 1
    (the driver adds the rows of the blocks before it)."""
    if tabular:
        return zip(range(1, batch.num_rows + 1), batch.to_pylist(), [0] * batch.num_rows)
    return zip(batch.column("row").to_pylist(), batch.column("raw").to_pylist(), batch.column("size").to_pylist())


def check_batch(batch: pa.Table, model_path: str | None, max_row_bytes: int, keep_messages: bool = False,
                tabular: bool = False, columns: dict[str, str] | None = None) -> pa.Table:
    """Check each row: UTF-8, JSON, known format, fields and types; then count the tokens of the valid ones.
    ``tabular``: the batch holds a table's own columns (Parquet, CSV, Arrow) instead of JSON lines; ``columns``
    renames them to the fields they stand for.

    Output columns: row, format (null when invalid), error (null when valid), tokens (-1 when invalid or no
    model), messages (JSON of the normalized conversation, for preview rows or when ``keep_messages``).
    """
    rows: list[int] = []
    formats: list[str | None] = []
    errors: list[str | None] = []
    conversations: list[list[dict] | None] = []
    for row, raw, size in _records(batch, tabular):
        fmt, error, messages = None, None, None
        rows.append(row)
        if raw is None:
            error = f"row is {size:,} bytes, over the {max_row_bytes:,}-byte limit for one row"
        else:
            try:
                record = raw if tabular else json.loads(raw.decode("utf-8"))
                fmt, messages = to_messages(apply_columns(record, columns))
            except UnicodeDecodeError as exc:
                error = _decode_error(exc)
            except json.JSONDecodeError as exc:
                error = f"not valid JSON ({exc.msg} at column {exc.colno})"
            except RowError as exc:
                error = str(exc)
            except RecursionError:
                error = "not valid JSON (nested too deeply)"
        formats.append(fmt)
        errors.append(error)
        conversations.append(messages)
    tokens = [-1] * len(rows)
    valid = [i for i, m in enumerate(conversations) if m is not None]
    if model_path and valid:
        tokenizer = counting_tokenizer(model_path)
        for i, count in zip(valid, count_tokens(tokenizer, render(tokenizer, [conversations[i] for i in valid]))):
            tokens[i] = count
    kept = [
        json.dumps(m, ensure_ascii=False) if m is not None and (keep_messages or r <= PREVIEW_SCAN_ROWS) else None
        for r, m in zip(rows, conversations)
    ]
    return pa.table(
        {
            "row": pa.array(rows, pa.int64()),
            "format": pa.array(formats, pa.string()),
            "error": pa.array(errors, pa.string()),
            "tokens": pa.array(tokens, pa.int64()),
            "messages": pa.array(kept, pa.string()),
        }
    )


def summarize_batch(batch: pa.Table, model_path: str | None, max_row_bytes: int, keep: int, tabular: bool = False,
                    columns: dict[str, str] | None = None) -> pa.Table:
    """``check_batch`` folded into one summary row per block (JSON): row count, the first ``keep`` errors, and per
    format the valid count, first ``keep`` row numbers, token-length histogram and preview rows. The driver then
    merges a few numbers per block; folding every row there took ~15% of the 2 cores the checks need."""
    import pyarrow.compute as pc

    checked = check_batch(batch, model_path, max_row_bytes, tabular=tabular, columns=columns)  # in file order
    failed = pc.is_valid(checked["error"])
    bad = checked.filter(failed).slice(0, keep)
    good = checked.filter(pc.invert(failed))
    formats = {}
    for fmt in pc.unique(good["format"]).to_pylist():
        rows = good.filter(pc.equal(good["format"], fmt))
        counted = rows["tokens"].filter(pc.greater_equal(rows["tokens"], 0))
        shown = rows.filter(pc.is_valid(rows["messages"]))
        formats[fmt] = {
            "valid": rows.num_rows,
            "first_rows": rows["row"].slice(0, keep).to_pylist(),
            "tokens": {str(c["values"]): c["counts"] for c in pc.value_counts(counted).to_pylist()},
            "previews": list(zip(shown["row"].to_pylist()[:keep], shown["messages"].to_pylist()[:keep])),
        }
    summary = {"rows": checked.num_rows, "errors": list(zip(bad["row"].to_pylist(), bad["error"].to_pylist())),
               "formats": formats}
    return pa.table({"summary": [json.dumps(summary)]})


class RowIssue(BaseModel):
    row: int = Field(description="1-based line number in a JSON Lines file; for a JSON array, Parquet, CSV or Arrow "
                                 "the 1-based row (item) number, header excluded.")
    reason: str = Field(description="What is wrong with the row, in plain words.")


class TokenStats(BaseModel):
    model: str = Field(description="Model whose tokenizer and chat template were used.")
    max_length: int = Field(description="Training max length the rows were compared with.")
    p50: int
    p95: int
    max: int
    mean: float
    over_max_length: int = Field(description="Valid rows longer than max_length (they would be truncated).")


class ValidationReport(BaseModel):
    """What the upload check found; shown in the UI and returned by the API."""

    format: str | None = Field(description="The dataset's format (the one most valid rows use).")
    formats: dict[str, int] = Field(description="Valid rows per detected format.")
    rows_total: int
    rows_valid: int
    rows_invalid: int
    errors: list[RowIssue] = Field(description="The first problems, by row number.")
    tokens: TokenStats | None = None
    preview: list[list[dict]] = Field(description="The first valid rows as the conversations trained on.")
    seconds: float = Field(description="Validation wall time.")
    file_format: str | None = Field(None, description="How the file was stored and read: jsonl, json-array, parquet, "
                                                      "csv, tsv, arrow or hf-datasets (a datasets save_to_disk folder).")
    column_mapping: dict[str, str] = Field(
        default_factory=dict, description="The dataset fields read from other columns (field → column), detected "
        "from the column names or set by the uploader; empty when the columns already have the fields' names.")
    column_mapping_source: str | None = Field(None, description="'detected' or 'user' when column_mapping is set.")


def _percentile(counts: Counter, q: float) -> int:
    total = sum(counts.values())
    if not total:
        return 0
    rank, seen = q * (total - 1), 0
    for value in sorted(counts):
        seen += counts[value]
        if seen > rank:
            return int(value)
    return int(max(counts))


def validate_dataset(
    path: Path,
    model_path: str | None,
    model_name: str | None = None,
    max_length: int = 1024,
    max_errors: int = 20,
    preview_rows: int = 5,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
    columns: dict[str, str] | None = None,
    file_format: str | None = None,
) -> ValidationReport:
    """Validate a stored dataset (JSON Lines, Parquet, CSV/TSV, Arrow, a datasets folder) with Ray Data (needs a
    connected Ray) and fold the results into one report; ``columns`` maps fields to the columns holding them.

    Rows of a format other than the dataset's main one are reported as invalid: one dataset trains one way.
    """
    start = time.perf_counter()
    tabular = data_kind(path) != "jsonl"
    ds = bounded(read_rows(path, max_row_bytes)).map_batches(
        summarize_batch,
        compute=check_pool(),
        batch_format="pyarrow",
        batch_size=None,
        fn_kwargs={"model_path": model_path, "max_row_bytes": max_row_bytes, "keep": max_errors, "tabular": tabular,
                   "columns": columns or None},
        # One tokenizer thread per check task: the pool already has a task per core, and the Rust tokenizer's own
        # threads on top only fight those tasks for the same cores.
        runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
    )
    total = 0
    errors: list[tuple[int, str]] = []  # max-heap by row (negated) holding the first max_errors problems
    by_format: dict[str, int] = Counter()
    first_rows: dict[str, list[int]] = {}  # per format, the smallest row numbers (to report minority rows)
    lengths: dict[str, Counter] = {}
    previews: dict[str, list[tuple[int, str]]] = {}
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        for summary in map(json.loads, batch.column("summary").to_pylist()):
            base = total if tabular else 0  # a tabular block numbers its rows from 1; blocks come in file order
            total += summary["rows"]
            for row, error in summary["errors"]:
                heapq.heappush(errors, (-(base + row), error))
                if len(errors) > max_errors:
                    heapq.heappop(errors)
            for fmt, part in summary["formats"].items():
                by_format[fmt] += part["valid"]
                heap = first_rows.setdefault(fmt, [])
                for row in part["first_rows"]:
                    heapq.heappush(heap, -(base + row))
                    if len(heap) > max_errors:
                        heapq.heappop(heap)
                lengths.setdefault(fmt, Counter()).update({int(k): v for k, v in part["tokens"].items()})
                shown = previews.setdefault(fmt, [])
                shown.extend((base + row, msgs) for row, msgs in part["previews"])
                if tabular:  # its blocks come in file order (preserve_order): the first rows are enough
                    del shown[max(preview_rows, 1) * 4:]
    main = max(by_format, key=lambda f: (by_format[f], f == "chat")) if by_format else None
    issues = [(-r, reason) for r, reason in errors]
    for fmt, heap in first_rows.items():
        if fmt != main:
            reason = f"row is in {fmt} format but the dataset is {main} ({by_format[main]} rows); use one format per file"
            issues += [(-r, reason) for r in heap]
    issues.sort()
    valid = by_format.get(main, 0)
    stats = None
    if main and main in lengths:
        counts = lengths[main]
        n = sum(counts.values())
        stats = TokenStats(
            model=model_name or str(model_path),
            max_length=max_length,
            p50=_percentile(counts, 0.5),
            p95=_percentile(counts, 0.95),
            max=max(counts),
            mean=round(sum(k * v for k, v in counts.items()) / n, 1),
            over_max_length=sum(v for k, v in counts.items() if k > max_length),
        )
    preview = [json.loads(m) for _, m in sorted(previews.get(main, []))[:preview_rows]]
    return ValidationReport(
        format=main,
        formats=dict(by_format),
        rows_total=total,
        rows_valid=valid,
        rows_invalid=total - valid,
        errors=[RowIssue(row=r, reason=reason) for r, reason in issues[:max_errors]],
        tokens=stats,
        preview=preview,
        seconds=round(time.perf_counter() - start, 3),
        file_format=file_format or data_kind(path),
        column_mapping=columns or {},
    )
