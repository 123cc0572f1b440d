"""LLM: ask a chat model — the studio's own gateway by default, or any OpenAI-compatible endpoint."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext
from sage_studio.settings import DEFAULT_MODEL_ALIAS


class GeneratorConfig(OperatorConfig):
    endpoint: Literal["studio", "remote", "custom"] = Field(
        default="studio",
        description="'studio': this studio's gateway (/v1, model 'sage-default' unless set); 'remote': the endpoint "
        "in SAGE_CHAT_BASE_URL/SAGE_CHAT_API_KEY/SAGE_CHAT_MODEL; 'custom': base_url and api_key below.",
    )
    model: str | None = Field(default=None, description="Model name; default 'sage-default' (studio) or SAGE_CHAT_MODEL.")
    base_url: str | None = Field(default=None, description="OpenAI-compatible base URL ending in /v1 (custom only).")
    api_key: str | None = Field(
        default=None, description="API key for the custom endpoint; it is saved in the pipeline file in clear."
    )
    max_tokens: int = Field(default=128, ge=1, le=8192, description="Longest answer, in tokens.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 gives the same answer for the same prompt.")
    timeout_s: float = Field(default=120.0, gt=0, le=3600, description="Give up on a request after this long.")

    @model_validator(mode="after")
    def _custom_needs_url(self) -> "GeneratorConfig":
        if self.endpoint == "custom" and not self.base_url:
            raise ValueError("endpoint 'custom' needs base_url")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return self


class Generator(Operator):
    type_name = "generator"
    category = "llm"
    label = "Generator"
    description = "Sends the messages to a chat model through the OpenAI API and returns its answer."
    Config = GeneratorConfig
    inputs = {
        "prompt": Port(DataType.MESSAGES, description="Chat messages, usually from a promptor."),
        "session": Port(DataType.TEXT, required=False,
                        description="A studio session id: the gateway stores the turn and injects that session's memory."),
    }
    output = DataType.TEXT
    cacheable = False

    def _target(self) -> tuple[str, str, str]:
        cfg = self.config
        if cfg.endpoint == "studio":
            return f"{self.env.studio_url}/v1", self.env.api_key or "sage", cfg.model or DEFAULT_MODEL_ALIAS
        if cfg.endpoint == "remote":
            base = os.environ.get("SAGE_CHAT_BASE_URL")
            if not base:
                raise ValueError("endpoint 'remote' needs SAGE_CHAT_BASE_URL to be set where the pipeline runs")
            model = cfg.model or os.environ.get("SAGE_CHAT_MODEL")
            if not model:
                raise ValueError("endpoint 'remote' needs a model (config 'model' or SAGE_CHAT_MODEL)")
            return base, os.environ.get("SAGE_CHAT_API_KEY") or "none", model
        return cfg.base_url, cfg.api_key or "none", cfg.model or DEFAULT_MODEL_ALIAS

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> str:
        from openai import OpenAI

        base_url, api_key, model = self._target()
        client = OpenAI(base_url=base_url, api_key=api_key, timeout=self.config.timeout_s, max_retries=1)
        extra = {"session_id": inputs["session"]} if inputs.get("session") else None
        ctx.log(f"POST {base_url}/chat/completions model={model}")
        response = client.chat.completions.create(
            model=model,
            messages=inputs["prompt"],
            max_tokens=self.config.max_tokens,
            temperature=self.config.temperature,
            extra_body=extra,
        )
        choice = response.choices[0]
        usage = response.usage
        if usage is not None:
            ctx.log(f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens, "
                    f"finish={choice.finish_reason}")
        return choice.message.content or ""
