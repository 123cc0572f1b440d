"""A fine-tune's LoRA adapter merged into its base model (peft ``merge_and_unload``), cached beside the task.

The merged checkpoint lives in ``<task dir>/merged/<fingerprint>/``: the fingerprint covers the adapter's files and
the base checkpoint's, so a re-trained adapter (or a changed base) gets a new copy and a served copy is never
overwritten in place. It is written into a temporary folder and renamed when complete, so a crash mid-merge leaves
no half checkpoint that looks usable.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

COMPLETE = ".merged"


def _fingerprint(base_dir: Path, adapter_dir: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(adapter_dir.glob("adapter_*")):
        digest.update(file.name.encode())
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    # The base checkpoint is large: its files' names, sizes and times identify it well enough.
    for file in sorted(p for p in base_dir.iterdir() if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def merged_path(base_dir: str | Path, adapter_dir: str | Path, out_root: str | Path) -> Path:
    """Where the merged copy of this adapter on this base lives (whether or not it exists yet)."""
    return Path(out_root) / _fingerprint(Path(base_dir), Path(adapter_dir))


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, out_root: str | Path,
                  keep: tuple[str | Path, ...] = ()) -> Path:
    """The merged checkpoint of ``adapter_dir`` on ``base_dir`` under ``out_root``: made once, then reused.

    Older merged copies under ``out_root`` are removed, except those in ``keep`` (a copy being served)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir, adapter_dir, out_root = Path(base_dir), Path(adapter_dir), Path(out_root)
    target = merged_path(base_dir, adapter_dir, out_root)
    if not (target / COMPLETE).is_file():
        out_root.mkdir(parents=True, exist_ok=True)
        tmp = out_root / f".tmp-{uuid.uuid4().hex}"
        try:
            torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
            model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto")
            model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
            model.save_pretrained(tmp, safe_serialization=True)
            # The tokenizer (and its chat template) the fine-tune was trained with: the adapter's copy, else the base's.
            tokenizer_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir
            AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp)
            (tmp / COMPLETE).write_text(f"base={base_dir}\nadapter={adapter_dir}\n")
            if target.exists():  # an unfinished copy from a crash: replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    kept = {Path(k).resolve() for k in keep} | {target.resolve()}
    for old in out_root.iterdir():
        if old.is_dir() and not old.name.startswith(".tmp-") and old.resolve() not in kept:
            shutil.rmtree(old, ignore_errors=True)
    return target
