"""Model references: checkpoint folder, prepared name, Hugging Face hub id from the cache (offline), downloads only
where allowed and clear answers when the hub refuses; ``sage models list`` / ``pull``; the catalog's sizes."""

from __future__ import annotations

import json
import shutil

import httpx2
import pytest
from typer.testing import CliRunner

from sage_cli.main import app
from sage_studio import hub
from sage_studio.model_store import ModelNotFoundError, find_model_path, resolve_model_path, served_name

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_a_hub_id_resolves_from_the_cache_offline(hub_model, tiny_model_dir):
    snapshot = hub.hub_cache_dir() / "models--sage-test--tiny-llama" / "snapshots" / COMMIT
    assert hub.hub_offline()
    assert find_model_path(hub_model) == snapshot
    assert resolve_model_path(hub_model) == snapshot
    assert resolve_model_path(f"{hub_model}@main") == snapshot
    assert resolve_model_path(f"{hub_model}@{COMMIT}") == snapshot
    assert (snapshot / "config.json").read_bytes() == (tiny_model_dir / "config.json").read_bytes()
    assert served_name(hub_model) == served_name(f"{hub_model}@main") == hub_model
    assert served_name(str(tiny_model_dir)) == "tiny-llama"
    # A folder or a prepared model of the same shape wins over the hub: they are looked up first.
    assert resolve_model_path("tiny-llama") == tiny_model_dir
    assert resolve_model_path(str(tiny_model_dir)) == tiny_model_dir


def test_an_unknown_hub_id_offline_says_which_and_how_to_fetch_it(hub_model):
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_path("nobody/no-such-model")
    assert "'nobody/no-such-model' is not in the Hugging Face cache" in str(info.value)
    assert "sage models pull nobody/no-such-model" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set, so it cannot be downloaded"):
        resolve_model_path("nobody/no-such-model", download=True)
    with pytest.raises(ModelNotFoundError, match="no revision|not in the Hugging Face cache"):
        resolve_model_path(f"{hub_model}@v9")  # a revision the cache has no ref for
    with pytest.raises(ModelNotFoundError, match="neither a checkpoint folder"):
        resolve_model_path("no-such-name")


def _refusal(cls, status: int):
    request = httpx2.Request("GET", "https://huggingface.co/api/models/x")
    return cls("refused", response=httpx2.Response(status, request=request))


@pytest.mark.parametrize(("error", "expected"), [
    ("gated", "is gated on the Hugging Face Hub: accept its terms"),
    ("missing", "There is no model 'org/closed' on the Hugging Face Hub"),
    ("network", "Could not download 'org/closed' from the Hugging Face Hub (ConnectError"),
])
def test_hub_refusals_become_clear_messages(monkeypatch, hub_model, error, expected):
    """With network allowed, what the hub answers (the hub itself cannot be reached from here, so its client is
    made to raise what it raises) becomes a sentence that says what to do."""
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    real = huggingface_hub.snapshot_download

    def refuse(*args, **kwargs):
        if kwargs.get("local_files_only"):
            return real(*args, **kwargs)  # the cache look-up itself
        if error == "network":
            raise huggingface_hub.errors.LocalEntryNotFoundError("Got: ConnectError: Name or service not known")
        raise _refusal(GatedRepoError if error == "gated" else RepositoryNotFoundError, 401 if error == "gated" else 404)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(ModelNotFoundError, match=expected.replace("(", r"\(")):
        resolve_model_path("org/closed", download=True)
    # Cached models never reach the hub, whatever it would say.
    assert resolve_model_path(hub_model, download=True).is_dir()


def test_models_pull_and_list(hub_model, tiny_model_dir, sage_home):
    from sage_studio.settings import get_settings
    from train.store import FinetuneStore

    runner = CliRunner()
    pulled = runner.invoke(app, ["models", "pull", hub_model])
    assert pulled.exit_code == 0, pulled.output
    assert "snapshots" in pulled.output and f"--llm-model {hub_model}" in pulled.output
    refused = runner.invoke(app, ["models", "pull", "nobody/no-such-model"])
    assert refused.exit_code == 1 and "sage models pull nobody/no-such-model" in refused.output

    store = FinetuneStore(get_settings().sage_home)
    task = "ft-listed0000"
    if store.get_task(task) is None:
        store.add_task(task, "listed fine-tune", {"model": hub_model})
        shutil.copytree(tiny_model_dir, store.task_dir(task) / "adapter")  # any files: only its size is read
        store.update_task(task, state="completed")
    listed = runner.invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    models = {m["name"]: m for m in json.loads(listed.output)}
    size = sum(p.stat().st_size for p in tiny_model_dir.iterdir() if p.is_file())
    assert models["tiny-llama"]["kind"] == "prepared" and models["tiny-llama"]["size_bytes"] == size
    assert models[hub_model]["kind"] == "cached" and models[hub_model]["size_bytes"] == size
    assert models[task]["kind"] == "finetune" and models[task]["base"] == hub_model
    table = runner.invoke(app, ["models", "list"])
    assert hub_model in table.output and "cached" in table.output and "listed fine-tune" in table.output


@pytest.mark.slow
def test_a_gguf_file_in_the_cache_is_converted_once(sage_home):
    """``org/name:file.gguf`` (the embedded SmolLM2 GGUF, laid in the cache as a hub repo) becomes a safetensors
    checkpoint under SAGE_HOME/models with its manifest; later look-ups find it without converting again."""
    from studio_helpers import write_hub_cache
    from sage_studio.model_store import _find_gguf

    gguf = _find_gguf()
    staging = sage_home / "gguf-repo"
    staging.mkdir(exist_ok=True)
    if not (staging / gguf.name).exists():
        (staging / gguf.name).symlink_to(gguf)
    write_hub_cache(staging, "sage-test/smol-gguf")
    ref = f"sage-test/smol-gguf:{gguf.name}"
    assert find_model_path(ref) is None  # a look-up never converts
    assert served_name(ref) == "sage-test/smol-gguf"
    path = resolve_model_path(ref)
    assert path == sage_home / "models" / f"sage-test--smol-gguf--{gguf.stem}"
    assert (path / "config.json").is_file() and (path / "sage_manifest.json").is_file()
    assert json.loads((path / "sage_manifest.json").read_text())["source"] == ref
    assert find_model_path(ref) == path
