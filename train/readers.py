"""Ray Data readers of the stored datasets: JSON Lines (ours, so every row keeps its line number), Parquet and
CSV/TSV (Ray Data's own ``read_parquet`` / ``read_csv``), and Arrow IPC files or streams, which is also what a folder
saved by Hugging Face ``datasets`` (``save_to_disk``) holds (Ray Data has no Arrow reader, so a small one is here).

Every reader streams: blocks of a few thousand rows, never the whole file. Tabular files carry no line numbers, so
their rows are numbered by the validation driver in read order (``preserve_order``), 1 = the first data row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pyarrow as pa
from ray.data.datasource import FileBasedDatasource

from train.store import DATA_FILES

CHUNK_BYTES = 1 << 20
ROWS_PER_BLOCK = 4096
DEFAULT_MAX_ROW_BYTES = 1 << 20
_SCHEMA = pa.schema([("row", pa.int64()), ("raw", pa.binary()), ("size", pa.int64())])
ARROW_FILE_MAGIC = b"ARROW1"


class JsonLinesDatasource(FileBasedDatasource):
    """One row per line: ``row`` (1-based line number), ``raw`` bytes (null when longer than the limit), ``size``.

    Blank lines are skipped but still counted, so row numbers are the line numbers an editor shows.
    """

    def __init__(self, paths, *, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES, **kwargs):
        super().__init__(paths, **kwargs)
        self.max_row_bytes = max_row_bytes

    def _read_stream(self, f: "pa.NativeFile", path: str) -> Iterator[pa.Table]:
        rows: list[int] = []
        raws: list[bytes | None] = []
        sizes: list[int] = []
        line_no = 0
        pending = b""
        skipped = -1  # >= 0 while discarding the rest of an over-long line: its byte count so far

        def emit(raw: bytes | None, size: int) -> None:
            if raw is not None and not raw.strip():
                return
            rows.append(line_no)
            raws.append(raw)
            sizes.append(size)

        first = True
        while chunk := f.read(CHUNK_BYTES):
            if first and chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]  # a UTF-8 byte-order mark is harmless: drop it rather than fail row 1
            first = False
            parts = chunk.split(b"\n")
            for part in parts[:-1]:
                line_no += 1
                if skipped >= 0:
                    emit(None, skipped + len(part))
                    skipped = -1
                    continue
                line = pending + part if pending else part
                pending = b""
                emit(None if len(line) > self.max_row_bytes else line, len(line))
            tail = parts[-1]
            if skipped >= 0:
                skipped += len(tail)
            else:
                pending += tail
                if len(pending) > self.max_row_bytes:
                    skipped, pending = len(pending), b""
            if len(rows) >= ROWS_PER_BLOCK:
                yield pa.Table.from_pydict({"row": rows, "raw": raws, "size": sizes}, schema=_SCHEMA)
                rows, raws, sizes = [], [], []
        if skipped >= 0 or pending:
            line_no += 1
            emit(None if skipped >= 0 else pending, skipped if skipped >= 0 else len(pending))
        if rows:
            yield pa.Table.from_pydict({"row": rows, "raw": raws, "size": sizes}, schema=_SCHEMA)


class ArrowDatasource(FileBasedDatasource):
    """Arrow IPC files (Feather v2) and streams (``datasets``' shards), memory-mapped, in blocks of at most
    ``ROWS_PER_BLOCK`` rows (slices of a memory map: only the rows of the block being read are paged in)."""

    def _read_stream(self, f: "pa.NativeFile", path: str) -> Iterator[pa.Table]:
        source = pa.memory_map(path)  # the store is local (the read is pinned to its node); IPC files need seeking
        if source.read(6) == ARROW_FILE_MAGIC:
            source.seek(0)
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            source.seek(0)
            batches = iter(pa.ipc.open_stream(source))
        for batch in batches:
            for start in range(0, batch.num_rows, ROWS_PER_BLOCK):
                yield pa.Table.from_batches([batch.slice(start, ROWS_PER_BLOCK)])


def hf_dataset_files(folder: Path) -> list[Path]:
    """The Arrow shards of a folder saved by ``datasets`` (``Dataset`` or ``DatasetDict.save_to_disk``), in order;
    a ``DatasetDict`` gives its ``train`` split (else its first). ValueError saying what is missing."""
    folder = Path(folder)
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text()).get("splits") or []
        if not splits:
            raise ValueError("dataset_dict.json lists no splits")
        folder = folder / ("train" if "train" in splits else splits[0])
    state = folder / "state.json"
    if not state.is_file():
        raise ValueError("the folder has no state.json (nor dataset_dict.json): save it with datasets' "
                         "save_to_disk, or upload a Parquet, CSV, Arrow or JSON Lines file")
    files = [folder / item["filename"] for item in json.loads(state.read_text()).get("_data_files", [])]
    for path in files:
        if not path.resolve().is_relative_to(folder.resolve()) or not path.is_file():
            raise ValueError(f"state.json names a data file that is not in the folder: {path.name}")
    if not files:
        raise ValueError("state.json lists no data files")
    return files


def data_kind(path: Path) -> str:
    """Which reader a stored data path needs (one of ``DATA_FILES``' keys), from its name."""
    path = Path(path)
    if path.is_dir():
        return "hf-datasets"
    kind = path.suffix.lstrip(".")
    return kind if kind in DATA_FILES else "jsonl"


def column_names(path: Path) -> list[str]:
    """The columns of a tabular data file, from its footer, header line or schema (nothing else is read)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    kind = data_kind(path)
    if kind == "parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    if kind in ("csv", "tsv"):
        with pacsv.open_csv(path, parse_options=_csv_parse(kind), read_options=pacsv.ReadOptions(block_size=1 << 16)) \
                as reader:
            return list(reader.schema.names)
    if kind in ("arrow", "hf-datasets"):
        first = path if kind == "arrow" else hf_dataset_files(path)[0]
        with pa.memory_map(str(first)) as source:
            magic = source.read(6)
            source.seek(0)
            reader = pa.ipc.open_file(source) if magic == ARROW_FILE_MAGIC else pa.ipc.open_stream(source)
            return list(reader.schema.names)
    raise ValueError(f"{path.name} is JSON Lines: its rows name their own fields")


def _csv_parse(kind: str):
    import pyarrow.csv as pacsv

    return pacsv.ParseOptions(delimiter="\t" if kind == "tsv" else ",", newlines_in_values=True)


def read_rows(path: Path, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES):
    """A Ray Dataset of a stored dataset, read on the node that holds it: for JSON Lines the raw lines
    (``row``, ``raw``, ``size``), for tabular files their own columns, in file order."""
    import ray
    import ray.data
    import pyarrow.csv as pacsv

    # The dataset store lives on this node's disk: pin the read tasks here, even on a multi-node cluster (the same
    # node label Ray Train uses to pin its controller). The readers mostly wait on disk or on back-pressure:
    # holding a CPU would leave one check task on 2 cores.
    pinned = {"label_selector": {ray._raylet.RAY_NODE_ID_KEY: ray.get_runtime_context().get_node_id()}, "num_cpus": 0}
    kind = data_kind(path)
    path = Path(path).resolve()
    if kind == "jsonl":
        # One block per ~4k rows already comes out of the read task: one task keeps every line number.
        return ray.data.read_datasource(JsonLinesDatasource(str(path), max_row_bytes=max_row_bytes),
                                        override_num_blocks=1, **pinned)
    if kind == "parquet":
        ds = ray.data.read_parquet(str(path), **pinned)
    elif kind in ("csv", "tsv"):
        # Every column as text: a CSV answer "42" is the string the model should learn, not a number.
        types = {name: pa.string() for name in column_names(path)}
        ds = ray.data.read_csv(str(path), parse_options=_csv_parse(kind), file_extensions=None,
                               convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
                               override_num_blocks=1, **pinned)
    else:
        files = [path] if kind == "arrow" else hf_dataset_files(path)
        ds = ray.data.read_datasource(ArrowDatasource([str(f) for f in files], file_extensions=None),
                                      override_num_blocks=len(files), **pinned)
    ds.context.execution_options.preserve_order = True  # rows are numbered in read order
    return ds
