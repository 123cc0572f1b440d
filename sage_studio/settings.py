"""Studio-wide settings, read from the environment (``SAGE_*``) with embedded defaults.

Everything works offline on a laptop with no variable set: data goes under ``~/.sage``, the chat model is the
SmolLM2 checkpoint materialized by ``sage models prepare``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sage_studio.api_key import read_key_file

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
# The name that always means "whatever the studio currently chats with" (as in the original).
DEFAULT_MODEL_ALIAS = "sage-default"


class Settings(BaseSettings):
    """Environment settings shared by every part of the studio."""

    model_config = SettingsConfigDict(env_prefix="SAGE_", extra="ignore")

    home: Path = Field(
        default=Path("~/.sage"),
        validation_alias=AliasChoices("SAGE_HOME"),
        description="Root folder for models, sessions, datasets, fine-tunes and logs.",
    )
    studio_llm_model: str = Field(
        default=DEFAULT_MODEL_NAME,
        validation_alias=AliasChoices("SAGE_STUDIO_LLM_MODEL"),
        description="Chat model: a name known to the model store or a path to an HF checkpoint folder.",
    )
    studio_llm_gpu_memory: float = Field(
        default=0.9,
        gt=0,
        le=1,
        validation_alias=AliasChoices("SAGE_STUDIO_LLM_GPU_MEMORY"),
        description="Fraction of GPU memory vLLM may use (GPU hosts only).",
    )
    chat_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SAGE_CHAT_BASE_URL"),
        description="Remote OpenAI-compatible endpoint used as a fallback when the local engine is down.",
    )
    chat_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("SAGE_CHAT_API_KEY"), description="API key of the remote endpoint."
    )
    chat_model: str | None = Field(
        default=None, validation_alias=AliasChoices("SAGE_CHAT_MODEL"), description="Model name at the remote endpoint."
    )
    studio_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SAGE_STUDIO_API_KEY"),
        description="When set, /v1, /api, /sessions and /memory require 'Authorization: Bearer <key>'.",
    )
    studio_api_key_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("SAGE_STUDIO_API_KEY_FILE"),
        description="A file holding the key; it wins over SAGE_STUDIO_API_KEY. `sage studio start` writes "
        "SAGE_HOME/studio/api_key (0600) and gives the replicas only this path, never the key.",
    )

    @model_validator(mode="after")
    def _key_from_file(self) -> "Settings":
        if self.studio_api_key_file is not None:
            self.studio_api_key = read_key_file(self.studio_api_key_file)  # unreadable or empty: RuntimeError
        return self

    @property
    def sage_home(self) -> Path:
        path = self.home.expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def models_dir(self) -> Path:
        return self.sage_home / "models"

    @property
    def studio_dir(self) -> Path:
        """Runtime state of the studio itself: pid files, logs, the deployed Serve config."""
        return self.sage_home / "studio"


@lru_cache
def get_settings() -> Settings:
    return Settings()
