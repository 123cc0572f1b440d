"""The held-out split on real Ray Data: deterministic for a file and seed, disjoint from the training rows, of the
asked size; and the default val_size and its refusals."""

from __future__ import annotations

import pytest
from ft_helpers import alpaca_rows, write_jsonl

from sage_studio.errors import StudioError
from train.evaluation import held_out_count, resolve_val_size
from train.loop import training_dataset


def test_split_is_deterministic_disjoint_and_sized(ray_cluster, tiny_model_dir, tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", alpaca_rows(60))

    def split(seed):
        train, val, held = training_dataset(path, "alpaca", str(tiny_model_dir), 64, seed, val_size=0.2)
        train_rows = [int(r) for r in train.to_pandas()["row"]]
        assert sorted(int(r) for r in val.to_pandas()["row"]) == held
        return set(train_rows), held, len(train_rows)

    train_rows, held, n_train = split(7)
    assert len(held) == 12 and n_train == 48 == len(train_rows)  # every row once: none dropped, none repeated
    assert not train_rows & set(held)  # never trained on
    assert train_rows | set(held) == set(range(1, 61))
    again_train, again_held, _ = split(7)
    assert (again_train, again_held) == (train_rows, held)  # same file and seed: the same rows held out
    assert split(8)[1] != held  # another seed: another sample
    untouched, none, rows = training_dataset(path, "alpaca", str(tiny_model_dir), 64, 7, val_size=0.0)
    assert none is None and rows == [] and untouched.count() == 60


def test_default_val_size_and_refusals():
    assert resolve_val_size(None, 50, 1) == 0.1 and resolve_val_size(None, 49, 1) == 0.0
    assert resolve_val_size(0.3, 10, 1) == 0.3 and held_out_count(10, 0.3) == 3 and held_out_count(10, 0.01) == 1
    with pytest.raises(StudioError) as err:
        resolve_val_size(0.5, 1, 1)
    assert err.value.status == 422 and "leaves 0 for training" in err.value.message


def test_the_default_eval_schedule_fits_in_a_tenth_of_the_training_time():
    from train.evaluation import EVAL_BUDGET, FORWARD_SHARE, default_eval_steps

    # bench/finetune.py at val_size 0.1: 20 steps × 10 rows, 22 held out -> only the last step (and the base pass)
    assert default_eval_steps(20, 10, 22) == 20
    # 3 epochs of 900 rows, 100 held out: four passes, every quarter run
    assert default_eval_steps(270, 10, 100) == 68
    assert default_eval_steps(540, 5, 100) == 135   # batch 5: the same rows trained, the same schedule
    assert default_eval_steps(180, 10, 100) == 90  # 2 epochs: two passes
    assert default_eval_steps(3, 1, 1000) == 3  # never less than the last step's pass
    for steps, per_step, held in ((20, 10, 22), (270, 10, 100), (180, 10, 100), (1000, 8, 50)):
        passes = -(-steps // default_eval_steps(steps, per_step, held))
        assert (passes + 1) * FORWARD_SHARE * held <= EVAL_BUDGET * steps * per_step or passes == 1
