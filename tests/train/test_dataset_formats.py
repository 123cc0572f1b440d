"""Uploads in the formats hub datasets ship in — Parquet, CSV/TSV, Arrow/Feather, a zipped ``datasets`` folder —
validated on real Ray Data with the same row counts and token statistics as the same rows in JSON Lines; column
mappings detected or given and named in the report; wrong columns and unknown models refused with a clear 4xx."""

from __future__ import annotations

import io
import json
import zipfile

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from ft_helpers import alpaca_rows, upload

N = 60
BAD_ROW = 17  # 1-based: its output is empty


def _rows(n: int = N) -> list[dict]:
    rows = alpaca_rows(n)
    rows[BAD_ROW - 1] = {"instruction": "No answer", "output": ""}
    return rows


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows)


def _parquet(rows, **kwargs) -> bytes:
    sink = io.BytesIO()
    pq.write_table(_table(rows), sink, **kwargs)
    return sink.getvalue()


def _csv(rows, delimiter=",") -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(_table(rows), sink, write_options=pacsv.WriteOptions(delimiter=delimiter))
    return sink.getvalue()


def _feather(rows) -> bytes:
    sink = io.BytesIO()
    feather.write_feather(_table(rows), sink, compression="uncompressed")
    return sink.getvalue()


def _arrow_stream(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=16)
    return sink.getvalue()


def saved_to_disk_zip(splits: dict[str, list[list[dict]]]) -> bytes:
    """A zip of the folder ``datasets.DatasetDict.save_to_disk`` writes: dataset_dict.json, then per split its
    Arrow stream shards (data-0000k-of-0000n.arrow), state.json listing them and dataset_info.json."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("my_ds/dataset_dict.json", json.dumps({"splits": list(splits)}))
        for split, shards in splits.items():
            names = [f"data-{i:05d}-of-{len(shards):05d}.arrow" for i in range(len(shards))]
            for name, rows in zip(names, shards):
                zf.writestr(f"my_ds/{split}/{name}", _arrow_stream(_table(rows)))
            zf.writestr(f"my_ds/{split}/state.json", json.dumps({
                "_data_files": [{"filename": n} for n in names], "_fingerprint": "f" * 16, "_format_columns": None,
                "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False, "_split": split}))
            zf.writestr(f"my_ds/{split}/dataset_info.json", json.dumps({"citation": "", "description": "",
                                                                      "features": {}, "homepage": "", "license": ""}))
    return buf.getvalue()


@pytest.fixture(scope="module")
def jsonl_report(ft_app):
    body = "".join(json.dumps(r) + "\n" for r in _rows())
    with ft_app.client() as http:
        r = upload(http, "rows.jsonl", body.encode(), max_length="24")
    assert r.status_code == 201, r.text
    return r.json()["report"]


@pytest.mark.parametrize(("filename", "content", "file_format"), [
    ("rows.parquet", _parquet(_rows(), row_group_size=16), "parquet"),
    ("rows.csv", _csv(_rows()), "csv"),
    ("rows.tsv", _csv(_rows(), delimiter="\t"), "tsv"),
    ("rows.feather", _feather(_rows()), "arrow"),
    ("rows.arrow", _arrow_stream(_table(_rows())), "arrow"),
    ("my_ds.zip", saved_to_disk_zip({"train": [_rows()[:25], _rows()[25:]], "test": [alpaca_rows(3)]}),
     "hf-datasets"),
])
def test_tabular_uploads_match_the_same_rows_in_jsonl(http, jsonl_report, filename, content, file_format):
    r = upload(http, filename, content, max_length="24")
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert report["file_format"] == file_format and report["format"] == "alpaca"
    assert (report["rows_total"], report["rows_valid"], report["rows_invalid"]) == (N, N - 1, 1)
    assert [(e["row"], e["reason"]) for e in report["errors"]] == [(BAD_ROW, "field 'output' is empty")]
    assert report["tokens"] == jsonl_report["tokens"]
    assert report["preview"] == jsonl_report["preview"]
    assert report["column_mapping"] == {} and report["column_mapping_source"] is None


def test_rows_are_numbered_across_blocks_and_shards(http):
    """Row numbers of a tabular file are counted over every block the readers cut it into, in file order."""
    rows = alpaca_rows(9000)
    for bad in (3, 4100, 8999):
        rows[bad - 1] = {"instruction": "x", "output": ""}
    r = upload(http, "big.parquet", _parquet(rows, row_group_size=1000))
    assert r.status_code == 201, r.text
    assert [e["row"] for e in r.json()["report"]["errors"]] == [3, 4100, 8999]
    r = upload(http, "sharded.zip", saved_to_disk_zip({"train": [rows[:5000], rows[5000:]]}))
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert report["rows_total"] == 9000 and [e["row"] for e in report["errors"]] == [3, 4100, 8999]


def test_column_mapping_detected_or_given_is_named_in_the_report(http):
    completions = [{"prompt": f"Say {w}.", "completion": w, "id": i} for i, w in enumerate(["alpha", "beta"] * 5)]
    r = upload(http, "openai.parquet", _parquet(completions))
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert report["column_mapping"] == {"instruction": "prompt", "output": "completion"}
    assert report["column_mapping_source"] == "detected" and report["rows_valid"] == 10
    assert report["preview"][0] == [{"role": "user", "content": "Say alpha."}, {"role": "assistant", "content": "alpha"}]

    jsonl = "".join(json.dumps(r) + "\n" for r in completions).encode()  # the same mapping for JSON Lines
    assert upload(http, "openai.jsonl", jsonl).json()["report"]["column_mapping"]["instruction"] == "prompt"

    own = [{"q": f"What is {i}+{i}?", "a": str(2 * i), "ctx": "arithmetic"} for i in range(8)]
    r = upload(http, "own.csv", _csv(own), columns=json.dumps({"question": "q", "answer": "a", "context": "ctx"}))
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert report["format"] == "qa" and report["rows_valid"] == 8 and report["column_mapping_source"] == "user"
    assert report["column_mapping"] == {"question": "q", "answer": "a", "context": "ctx"}
    assert report["preview"][1][1] == {"role": "assistant", "content": "2"}  # CSV text stays text

    texts = [{"text": f"Ray Serve answers request {i}."} for i in range(5)]
    r = upload(http, "texts.parquet", _parquet(texts))
    assert r.status_code == 201 and r.json()["format"] == "text"


def test_wrong_columns_and_unknown_models_get_a_clear_4xx(http, sage_home):
    before = sorted(p.name for p in (sage_home.parent).iterdir())
    r = upload(http, "wrong.parquet", _parquet([{"foo": "a", "bar": "b"}] * 3))
    assert r.status_code == 422
    assert "columns (foo, bar) match no dataset format" in r.json()["detail"] and "'columns' field" in r.json()["detail"]
    r = upload(http, "wrong.csv", _csv(alpaca_rows(3)), columns=json.dumps({"instruction": "prompt", "output": "output"}))
    assert r.status_code == 422 and "no column 'prompt'; its columns are instruction, output" in r.json()["detail"]
    r = upload(http, "wrong.csv", _csv(alpaca_rows(3)), columns=json.dumps({"answerz": "output"}))
    assert r.status_code == 422 and "'answerz' is not a dataset field" in r.json()["detail"]
    r = upload(http, "bad.parquet", b"PAR1 but then nothing a reader can use")
    assert r.status_code == 422 and "looks like parquet but cannot be read" in r.json()["detail"]
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape/state.json", "{}")
    r = upload(http, "evil.zip", evil.getvalue())
    assert r.status_code == 422 and "unsafe path" in r.json()["detail"]
    r = upload(http, "rows.parquet", _parquet(alpaca_rows(4)), model="nobody/no-such-model")
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert "'nobody/no-such-model' is not in the Hugging Face cache" in detail
    assert "sage models pull nobody/no-such-model" in detail
    assert sorted(p.name for p in (sage_home.parent).iterdir()) == before  # nothing written beside the stores


def test_cli_uploads_a_datasets_folder_with_its_column_mapping(ft_app, tmp_path):
    """``sage finetune start --data FOLDER`` zips a save_to_disk folder; ``--columns`` names the columns (the
    fine-tune itself is refused here — 200 workers — so only the upload runs)."""
    from typer.testing import CliRunner

    from sage_cli.finetune import app

    rows = [{"ask": f"Say {w}.", "say": w} for w in ["alpha", "beta", "gamma"] * 4]
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "data-00000-of-00001.arrow").write_bytes(_arrow_stream(_table(rows)))
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    result = CliRunner().invoke(app, ["start", "--data", str(folder), "--model", "tiny-llama", "--columns",
                                      "instruction=ask,output=say", "--num-workers", "200", "--url", ft_app.base_url])
    assert "alpaca, 12 valid / 12 rows (columns instruction←ask, output←say)" in result.output, result.output
    assert result.exit_code != 0 and "200" in result.output.split("\n", 1)[1], result.output
