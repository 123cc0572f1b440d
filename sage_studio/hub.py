"""The Hugging Face side of the model store: hub ids (``org/name[@revision]``, ``org/name:file.gguf``), the local
hub cache (``HF_HOME``, ``HF_HUB_CACHE``) and downloads into it.

Every look-up goes through ``huggingface_hub``'s own cache API (``snapshot_download(local_files_only=True)``,
``try_to_load_from_cache``, ``scan_cache_dir``), so a cache filled by ``huggingface-cli``, ``transformers`` or
``sage models pull`` is read the same way. Nothing here reaches the network unless a caller asks to download, and
``HF_HUB_OFFLINE=1`` forbids that too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# org/name, then an optional @revision (branch, tag or commit), then an optional :file.gguf inside the repo.
_HUB_ID = re.compile(r"^(?P<repo>[\w][\w.-]*/[\w][\w.-]*)(?:@(?P<rev>[\w][\w./-]*))?(?::(?P<file>[\w./-]+\.gguf))?$")


class ModelNotFoundError(LookupError):
    """A model reference that is neither a checkpoint folder, a prepared model nor a usable hub id."""


@dataclass(frozen=True)
class HubRef:
    """A model on the Hugging Face Hub: its repo, the revision asked for and, for GGUF repos, the file."""

    repo_id: str
    revision: str | None = None
    gguf_file: str | None = None

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.repo_id}{rev}" + (f":{self.gguf_file}" if self.gguf_file else "")


def parse_hub_ref(text: str) -> HubRef | None:
    """The hub reference ``text`` names, or None when it does not look like one (a name, an absolute path)."""
    match = _HUB_ID.match(str(text))
    if match is None or ".." in match["repo"]:
        return None
    return HubRef(match["repo"], match["rev"], match["file"])


def hub_cache_dir() -> Path:
    """The hub cache, read from the environment at call time (``HF_HUB_CACHE``, else ``HF_HOME``/hub), so a
    process whose environment was set after ``huggingface_hub`` was imported still looks in the right place."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids any request to the hub."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return constants.HF_HUB_OFFLINE if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def _fetch_hint(ref: HubRef) -> str:
    return (f"run `sage models pull {ref}` on a machine with network (it fills the Hugging Face cache at "
            f"{hub_cache_dir()}), or copy that cache's models--{ref.repo_id.replace('/', '--')} folder here")


def cached_snapshot(ref: HubRef) -> Path | None:
    """The cached checkpoint folder of ``ref`` (its snapshot for the revision), or None if it is not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=hub_cache_dir(),
                                        local_files_only=True))
    except (LocalEntryNotFoundError, IncompleteSnapshotError, HFValidationError, OSError):
        return None
    return folder if (folder / "config.json").is_file() else None


def cached_file(ref: HubRef, filename: str) -> Path | None:
    """One cached file of ``ref`` (e.g. its GGUF file), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(ref.repo_id, filename, cache_dir=hub_cache_dir(), revision=ref.revision)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def download(ref: HubRef) -> Path:
    """Download ``ref`` into the hub cache once (huggingface_hub's progress bars on the terminal) and return the
    folder holding it; the GGUF file's path for ``org/name:file.gguf``. ModelNotFoundError with what to do when
    the hub refuses (gated, missing, no network, offline)."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)

    if hub_offline():
        raise ModelNotFoundError(f"Model '{ref}' is not in the Hugging Face cache ({hub_cache_dir()}) and "
                                 f"HF_HUB_OFFLINE is set, so it cannot be downloaded: {_fetch_hint(ref)}.")
    try:
        if ref.gguf_file:
            return Path(hf_hub_download(ref.repo_id, ref.gguf_file, revision=ref.revision, cache_dir=hub_cache_dir()))
        # Weights in safetensors where the repo has them: skip the duplicate .bin / .pth / .gguf copies.
        return Path(snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=hub_cache_dir(),
                                      ignore_patterns=["*.bin", "*.pth", "*.pt", "*.gguf", "*.onnx", "*.h5",
                                                       "*.msgpack", "original/*"]))
    except GatedRepoError:
        raise ModelNotFoundError(
            f"Model '{ref.repo_id}' is gated on the Hugging Face Hub: accept its terms on "
            f"https://huggingface.co/{ref.repo_id}, then log in (`hf auth login`, or set HF_TOKEN) and pull again."
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"There is no model '{ref.repo_id}' on the Hugging Face Hub (or it is private: log "
                                 "in with `hf auth login` or HF_TOKEN). Check the id's spelling (org/name).") from None
    except RevisionNotFoundError:
        raise ModelNotFoundError(f"Model '{ref.repo_id}' has no revision '{ref.revision}' on the Hugging Face "
                                 "Hub.") from None
    except RemoteEntryNotFoundError:
        raise ModelNotFoundError(f"Model '{ref.repo_id}' has no file '{ref.gguf_file}' on the Hugging Face Hub.") \
            from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        reason = str(exc).splitlines()[0].removeprefix("Got: ")[:200] if str(exc) else type(exc).__name__
        raise ModelNotFoundError(f"Could not download '{ref}' from the Hugging Face Hub ({reason}) and it is not in "
                                 f"the cache ({hub_cache_dir()}). Check the network (or a proxy, HF_ENDPOINT), or "
                                 f"{_fetch_hint(ref)}.") from None


def not_cached_error(ref: HubRef) -> ModelNotFoundError:
    """The error for a hub id that is not in the cache where nothing may download it (a request to the gateway)."""
    offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
    return ModelNotFoundError(f"Model '{ref}' is not in the Hugging Face cache at {hub_cache_dir()}{offline}: "
                              f"{_fetch_hint(ref)}.")


@dataclass(frozen=True)
class CachedModel:
    """A model repo in the hub cache: one row per cached revision that holds a checkpoint or a GGUF file."""

    repo_id: str
    revision: str  # the ref pointing at it ("main"), or the commit hash when no ref does
    path: Path
    size_bytes: int
    gguf_files: tuple[str, ...] = ()


def cached_models() -> list[CachedModel]:
    """What the hub cache holds, from ``huggingface_hub.scan_cache_dir`` (a missing cache is an empty list)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(hub_cache_dir())
    except (CacheNotFound, OSError):
        return []
    out = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: sorted(r.refs) or [r.commit_hash]):
            names = {f.file_name for f in rev.files}
            ggufs = tuple(sorted(str(f.file_path.relative_to(rev.snapshot_path)) for f in rev.files
                                 if f.file_name.endswith(".gguf")))
            if "config.json" not in names and not ggufs:
                continue  # a tokenizer-only or dataset-like repo: nothing the studio can serve
            label = "main" if "main" in rev.refs else (sorted(rev.refs)[0] if rev.refs else rev.commit_hash)
            out.append(CachedModel(repo.repo_id, label, rev.snapshot_path, rev.size_on_disk, ggufs))
    return out
