"""Row formats without Ray: alpaca ``system``/``history`` reach the tokenized training example, column sets other
tools write are mapped to the dataset fields, and upload sniffing tells the formats apart by content."""

from __future__ import annotations

import pytest

from train.formats import RowError, apply_columns, detect_columns, encode_for_training, to_messages
from train.uploads import DatasetError, sniff

ROW = {
    "system": "You are the studio's guide.",
    "history": [["What serves models?", "Ray Serve does."], ["And trains them?", "Ray Train."]],
    "instruction": "Who validates datasets?",
    "input": "",
    "output": "Ray Data.",
}


def test_alpaca_system_and_history_are_in_the_tokenized_example(tiny_model_dir):
    from transformers import AutoTokenizer

    fmt, messages = to_messages(ROW)
    assert fmt == "alpaca"
    assert messages == [
        {"role": "system", "content": "You are the studio's guide."},
        {"role": "user", "content": "What serves models?"}, {"role": "assistant", "content": "Ray Serve does."},
        {"role": "user", "content": "And trains them?"}, {"role": "assistant", "content": "Ray Train."},
        {"role": "user", "content": "Who validates datasets?"}, {"role": "assistant", "content": "Ray Data."},
    ]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids, labels = encode_for_training(tokenizer, messages, max_length=512)
    text = tokenizer.decode(ids)
    for turn in ("You are the studio's guide.", "What serves models?", "Ray Serve does.", "And trains them?",
                 "Ray Train.", "Who validates datasets?", "Ray Data."):
        assert turn in text
    learned = tokenizer.decode([t for t, lab in zip(ids, labels) if lab != -100])
    # Every assistant turn is learned (history answers too), no user or system text is.
    assert "Ray Serve does." in learned and "Ray Train." in learned and "Ray Data." in learned
    assert "What serves models?" not in learned and "guide" not in learned


@pytest.mark.parametrize(("history", "reason"), [
    ("not a list", "field 'history' must be an array"),
    ([["only one"]], "history[1] must be a pair of strings"),
    ([["q", 3]], "history[1] must be a pair of strings"),
])
def test_bad_history_is_a_row_error(history, reason):
    with pytest.raises(RowError, match=reason.replace("[", r"\[")):
        to_messages({**ROW, "history": history})


@pytest.mark.parametrize(("columns", "expected"), [
    (["messages", "id"], ("chat", {"messages": "messages"})),
    (["instruction", "input", "output"], ("alpaca", {"instruction": "instruction", "output": "output",
                                                     "input": "input"})),
    (["prompt", "completion"], ("alpaca", {"instruction": "prompt", "output": "completion"})),
    (["instruction", "context", "response", "category"],  # Dolly
     ("alpaca", {"instruction": "instruction", "output": "response", "input": "context"})),
    (["question", "context", "answer"], ("qa", {"question": "question", "answer": "answer", "context": "context"})),
    (["text", "meta"], ("text", {"text": "text"})),
    (["foo", "bar"], None),
])
def test_column_sets_map_to_fields(columns, expected):
    assert detect_columns(columns) == expected


def test_mapped_rows_keep_their_other_columns():
    row = {"input": "2+2?", "output": "4", "id": 9}
    assert apply_columns(row, {"instruction": "input", "output": "output"}) == {"instruction": "2+2?", "output": "4",
                                                                                "id": 9}
    assert to_messages(apply_columns({"prompt": "Hi", "completion": "Hello"},
                                     {"instruction": "prompt", "output": "completion"}))[1][1]["content"] == "Hello"


@pytest.mark.parametrize(("head", "name", "kind"), [
    (b"PAR1\x15\x04", "x.bin", "parquet"),
    (b"ARROW1\x00\x00", "x", "arrow"),
    (b"\xff\xff\xff\xff\x10\x01", "x", "arrow"),
    (b"PK\x03\x04", "x", "archive"),
    (b'{"instruction": "a"}\n', "x.csv", "jsonl"),  # the content wins over the name
    (b"[{}]", "x", "jsonl"),
    (b"instruction,output\na,b\n", "x", "csv"),
    (b"instruction\toutput\na\tb\n", "x", "tsv"),
    (b"instruction\n", "data.tsv", "tsv"),
])
def test_uploads_are_told_apart_by_content(tmp_path, head, name, kind):
    path = tmp_path / "upload.bin"
    path.write_bytes(head)
    assert sniff(path, name) == kind


def test_feather_v1_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "upload.bin"
    path.write_bytes(b"FEA1....")
    with pytest.raises(DatasetError, match="Feather v2"):
        sniff(path, "old.feather")
