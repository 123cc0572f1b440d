"""/api/datasets over real HTTP with validation on real Ray Data: good files, every kind of bad file, and the
guarantee that nothing is written outside the dataset store."""

from __future__ import annotations

import json

import pytest

from ft_helpers import alpaca_rows, upload
from studio_helpers import followed


def _files_under(root):
    # SQLite's journal files come and go with the studio's own databases: they are not what an upload leaves.
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.name.endswith(("-wal", "-shm")))


def test_upload_reports_format_counts_tokens_and_preview(http, tiny_model_dir):
    rows = alpaca_rows(40)
    rows[4] = {"instruction": "No answer here"}
    rows[9] = {"instruction": 7, "output": "x"}
    body = "".join(json.dumps(r) + "\n" for r in rows) + "this is not json\n"
    r = upload(http, "mine.jsonl", body.encode(), max_length="16")
    assert r.status_code == 201, r.text
    ds = r.json()
    report = ds["report"]
    assert ds["id"].startswith("ds-") and ds["format"] == "alpaca" and ds["filename"] == "mine.jsonl"
    assert (report["rows_total"], report["rows_valid"], report["rows_invalid"]) == (41, 38, 3)
    assert [(e["row"], e["reason"]) for e in report["errors"]] == [
        (5, "missing field 'output'"),
        (10, "field 'instruction' must be a string, got number"),
        (41, "not valid JSON (Expecting value at column 1)"),
    ]
    tokens = report["tokens"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)  # the lengths counted another way: templated ids
    lengths = [len(tokenizer.apply_chat_template(
        [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}],
        tokenize=True, return_dict=False)) for i, r in enumerate(rows) if i not in (4, 9)]
    assert tokens["model"] == "tiny-llama" and tokens["max"] == max(lengths)
    assert min(lengths) <= tokens["p50"] <= tokens["p95"] <= tokens["max"]
    assert tokens["mean"] == round(sum(lengths) / len(lengths), 1)
    assert tokens["over_max_length"] == 38  # every row is longer than 16 tokens once templated
    assert report["preview"][0] == [
        {"role": "user", "content": "Say the word number 0."}, {"role": "assistant", "content": "alpha"}
    ]
    assert http.get(f"/api/datasets/{ds['id']}").json()["rows_valid"] == 38
    assert ds["id"] in [d["id"] for d in http.get("/api/datasets").json()]


def test_json_array_chat_and_sharegpt_rows(http):
    rows = [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello!"}]},
        {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "wizard", "content": "?"}, {"role": "assistant", "content": "!"}]},
    ]
    r = upload(http, "chat.json", json.dumps(rows, indent=2).encode())
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert report["format"] == "chat" and report["rows_valid"] == 2
    assert [e["row"] for e in report["errors"]] == [3, 4]
    assert "no non-empty assistant message" in report["errors"][0]["reason"]
    assert "'wizard'" in report["errors"][1]["reason"]


def test_mixed_formats_are_reported_per_row(http):
    rows = alpaca_rows(6) + [{"question": "Where?", "answer": "Here."}]
    r = upload(http, "mixed.jsonl", "".join(json.dumps(x) + "\n" for x in rows).encode())
    report = r.json()["report"]
    assert report["format"] == "alpaca" and report["formats"] == {"alpaca": 6, "qa": 1}
    assert report["errors"] == [{"row": 7, "reason": "row is in qa format but the dataset is alpaca (6 rows); "
                                                     "use one format per file"}]


BAD_FILES = {
    "empty": (b"", 422, "The file is empty"),
    "blank lines only": (b"\n \n\t\n", 422, "The file is empty"),
    "not json": (b"hello world\nsecond line\n", 422, "None of the 2 rows can be used. row 1: not valid JSON"),
    "invalid utf-8": (b"\xff\xfe\xfa\x00garbage\n", 422, "UTF-16"),
    "latin-1 bytes": (b'{"instruction": "caf\xe9", "output": "x"}\n', 422, "not valid UTF-8 (byte 0xe9"),
    "json object": (json.dumps({"instruction": "a", "nested": {"x": 1}}, indent=2).encode(), 422,
                    "single JSON object, not rows"),
    "wrapper object": (json.dumps({"data": alpaca_rows(3)}).encode(), 422, "put the items of 'data' one per line"),
    "broken array": (b'[{"instruction": "a", "output": "b"}, {"instruction": ', 422,
                     "not valid JSON after row 1"),
    "array of numbers": (b"[1, 2, 3]", 422, "row 1: row is a JSON number, expected an object"),
    "wrong types": (b'{"question": ["a"], "answer": 3}\n', 422, "field 'question' must be a string, got array"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_get_a_clear_4xx_and_leave_nothing(http, ft_app, case):
    content, code, message = BAD_FILES[case]
    before = _files_under(ft_app.home)
    r = upload(http, "bad.jsonl", content)
    assert r.status_code == code, r.text
    assert message in r.json()["error"]["message"]
    assert _files_under(ft_app.home) == before  # the rejected upload left no file behind


def test_huge_single_line_is_a_row_error_not_a_crash(http):
    huge = b'{"instruction": "' + b"x" * (50 << 20) + b'", "output": "y"}\n'
    body = b"".join(json.dumps(r).encode() + b"\n" for r in alpaca_rows(3)) + huge
    r = upload(http, "huge.jsonl", body)
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert report["rows_valid"] == 3
    assert report["errors"] == [{"row": 4, "reason": "row is 52,428,834 bytes, over the 1,048,576-byte limit for "
                                                     "one row"}]


def test_size_limit_and_hostile_names(http, ft_app, monkeypatch):
    service = ft_app.app.state.services.datasets
    monkeypatch.setattr(service, "max_bytes", 1000)
    before = _files_under(ft_app.home)
    big = "".join(json.dumps(r) + "\n" for r in alpaca_rows(100)).encode()
    r = upload(http, "big.jsonl", big)
    assert r.status_code == 413 and "upload limit" in r.json()["error"]["message"]
    monkeypatch.setattr(service, "max_bytes", 1 << 20)
    r = upload(http, "../../../etc/evil.jsonl", big, name="../../x/\x00y")
    assert r.status_code == 201
    ds = r.json()
    assert ds["filename"] == "evil.jsonl" and "/" not in ds["name"] and "\x00" not in ds["name"]
    added = sorted(set(_files_under(ft_app.home)) - set(before))
    assert added == [f"datasets/{ds['id']}/data.jsonl"]


def test_request_errors(http):
    assert http.post("/api/datasets", json={"rows": []}).status_code == 415
    r = http.post("/api/datasets", files={"other": ("a", b"x")})
    assert r.status_code == 422 and "'file'" in r.json()["error"]["message"]
    r = upload(http, "a.jsonl", b'{"instruction": "a", "output": "b"}\n', model="no-such-model")
    assert r.status_code == 400 and "no-such-model" in r.json()["error"]["message"]
    r = upload(http, "a.jsonl", b'{"instruction": "a", "output": "b"}\n', max_length="lots")
    assert r.status_code == 422
    assert http.get("/api/datasets/ds-nope").status_code == 404
    assert http.delete("/api/datasets/ds-nope").status_code == 404


def test_revalidate_and_delete(http, ft_app):
    ds = upload(http, "a.jsonl", "".join(json.dumps(r) + "\n" for r in alpaca_rows(8)).encode()).json()
    r = followed(http, http.post(f"/api/datasets/{ds['id']}/validate", json={"model": "tiny-llama", "max_length": 4096}),
                 200)
    assert r.status_code == 200 and r.json()["report"]["tokens"]["over_max_length"] == 0
    assert http.delete(f"/api/datasets/{ds['id']}").status_code == 204
    assert http.get(f"/api/datasets/{ds['id']}").status_code == 404
    assert not (ft_app.home / "datasets" / ds["id"]).exists()


def test_docs_sample_dataset(http):
    from train.datasets import docs_sample_rows

    rows = docs_sample_rows("qa")
    r = followed(http, http.post("/api/finetune/prepare-docs-dataset", json={"format": "qa", "model": "tiny-llama"}))
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["format"] == "qa" and ds["rows_valid"] == len(rows) >= 10 and ds["report"]["rows_invalid"] == 0
    question, answer = ds["report"]["preview"][0]
    assert "SAGE Studio" in question["content"] and rows[0]["question"] in question["content"]
    assert answer == {"role": "assistant", "content": rows[0]["answer"]}
