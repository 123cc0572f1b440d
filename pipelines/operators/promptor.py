"""LLM: turn a question (and retrieved context) into chat messages, from a QA, summarization or chat template."""

from __future__ import annotations

from string import Template
from typing import Any, Literal

from pydantic import Field, field_validator

from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, RunContext

SYSTEM_PROMPTS = {
    "qa": "You are a helpful assistant. Answer the question using only the context. "
    "If the context does not contain the answer, say you do not know.",
    "summarize": "You are a helpful assistant that writes short, faithful summaries.",
    "chat": "You are a helpful assistant.",
}
USER_TEMPLATES = {
    "qa": "Context:\n$context\n\nQuestion: $question\nAnswer:",
    "summarize": "Summarize the following text in a few sentences.\n\n$context",
    "chat": "$question",
}
_PLACEHOLDERS = {"question", "context"}


class PromptorConfig(OperatorConfig):
    template: Literal["qa", "summarize", "chat"] = Field(
        default="qa", description="'qa': answer from context; 'summarize': summarize the context; 'chat': plain turn."
    )
    system_prompt: str | None = Field(default=None, max_length=10_000, description="Replaces the template's system prompt.")
    user_template: str | None = Field(
        default=None,
        max_length=20_000,
        description="Replaces the user message; may use $question and $context.",
    )
    max_context_chars: int = Field(
        default=3000, ge=100, le=200_000, description="Context is cut to this many characters (small models)."
    )

    @field_validator("user_template")
    @classmethod
    def _placeholders(cls, value: str | None) -> str | None:
        if value is not None:
            names = {m.group("named") or m.group("braced") for m in Template.pattern.finditer(value)} - {None}
            if names - _PLACEHOLDERS:
                raise ValueError(f"unknown placeholder(s) {sorted(names - _PLACEHOLDERS)}; use $question, $context")
        return value


class Promptor(Operator):
    type_name = "promptor"
    category = "llm"
    label = "Promptor"
    description = "Builds the chat messages for the generator from a question and context (QA / summarize / chat)."
    Config = PromptorConfig
    inputs = {
        "question": Port(DataType.TEXT, required=False, description="The user's question or message."),
        "context": Port(DataType.DOCUMENTS, required=False, description="Passages to answer from or summarize."),
    }
    output = DataType.MESSAGES

    def run(self, inputs: dict[str, Any], ctx: RunContext) -> list[dict[str, str]]:
        cfg = self.config
        question = inputs.get("question")
        docs = inputs.get("context") or []
        if cfg.template in ("qa", "chat") and not question:
            raise ValueError(f"the '{cfg.template}' template needs a question: connect the 'question' input")
        if cfg.template == "summarize" and not docs and not question:
            raise ValueError("nothing to summarize: connect 'context' (documents) or 'question' (text)")
        context = "\n\n".join(d["text"] for d in docs) if docs else (question or "")
        if len(context) > cfg.max_context_chars:
            ctx.log(f"context cut from {len(context)} to {cfg.max_context_chars} characters")
            context = context[: cfg.max_context_chars]
        user = Template(cfg.user_template or USER_TEMPLATES[cfg.template]).safe_substitute(
            question=question or "", context=context
        )
        return [
            {"role": "system", "content": cfg.system_prompt or SYSTEM_PROMPTS[cfg.template]},
            {"role": "user", "content": user},
        ]
