"""Dataset row formats (alpaca, chat, qa, text): detection, column mapping, per-row checks and the one
conversation shape they map to.

Every check returns a sentence a person can act on ("field 'output' must be a string, got number"), because these
messages are shown as-is in the upload report. Every valid row becomes a list of ``{"role", "content"}`` messages,
so training and token statistics see the same text whatever the source format was.
"""

from __future__ import annotations

from typing import Any

FORMAT_HELP = (
    "alpaca (instruction, input?, output, system?, history?), chat (messages or conversations: a list of "
    "{role, content}), qa (question, context?, answer) or text"
)
ROLES = ("system", "user", "assistant")
# ShareGPT-style conversations ({"from": "human", "value": ...}) are common enough to accept as chat.
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}

# The single-turn formats: (prompt field, optional field, answer field, how the prompt joins the first two).
_SINGLE_TURN = {
    "alpaca": ("instruction", "input", "output", "{main}\n\n{extra}"),
    "qa": ("question", "context", "answer", "Context:\n{extra}\n\nQuestion: {main}"),
}

# Column sets other tools write, and the fields they stand for (canonical field → column), tried in order on a
# dataset's columns when no mapping is given. The standard names come first, so they map to themselves.
COLUMN_RULES: list[tuple[str, dict[str, str]]] = [
    ("chat", {"messages": "messages"}),
    ("chat", {"conversations": "conversations"}),
    ("alpaca", {"instruction": "instruction", "output": "output"}),
    ("qa", {"question": "question", "answer": "answer"}),
    ("alpaca", {"instruction": "prompt", "output": "completion"}),  # OpenAI's legacy fine-tuning files, TRL
    ("alpaca", {"instruction": "prompt", "output": "response"}),
    ("alpaca", {"instruction": "query", "output": "response"}),
    ("alpaca", {"instruction": "instruction", "output": "response"}),  # Dolly (with context as input below)
    ("qa", {"question": "question", "answer": "response"}),
    ("alpaca", {"instruction": "input", "output": "output"}),
    ("text", {"text": "text"}),
]
# Optional columns that ride along with a rule's own (e.g. Dolly's context is alpaca's input).
OPTIONAL_COLUMNS = {"alpaca": {"input": ("input", "context"), "system": ("system",), "history": ("history",)},
                    "qa": {"context": ("context",)}}
FIELDS = {"chat": ("messages", "conversations"), "alpaca": ("instruction", "input", "output", "system", "history"),
          "qa": ("question", "context", "answer"), "text": ("text",)}


def detect_columns(columns: list[str]) -> tuple[str, dict[str, str]] | None:
    """(format, canonical field → column) for a dataset's column names, or None when no rule fits them."""
    present = set(columns)
    for fmt, mapping in COLUMN_RULES:
        if set(mapping.values()) <= present:
            found = dict(mapping)
            for field, candidates in OPTIONAL_COLUMNS.get(fmt, {}).items():
                free = [c for c in candidates if c in present and c not in found.values()]
                if field not in found and free:
                    found[field] = free[0]
            return fmt, found
    return None


def check_mapping(mapping: dict[str, str]) -> None:
    """ValueError naming the first field of a user's column mapping that no format has."""
    known = {f for fields in FIELDS.values() for f in fields}
    for field, column in mapping.items():
        if field not in known:
            raise ValueError(f"'{field}' is not a dataset field: map columns onto {', '.join(sorted(known))}")
        if not isinstance(column, str) or not column:
            raise ValueError(f"the column mapped to '{field}' must be a column name")


def apply_columns(row: Any, mapping: dict[str, str] | None) -> Any:
    """The row with its columns renamed to the fields they stand for (other columns are kept)."""
    if not mapping or not isinstance(row, dict):
        return row
    out = {k: v for k, v in row.items() if k not in mapping.values()}
    out.update({field: row.get(column) for field, column in mapping.items() if column in row})
    return out


# Used when a model's tokenizer ships no chat template (base models): plain markers the model can learn.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ '### ' + message['role'] | capitalize + ':\n' + message['content'] + '\n\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
)


class RowError(ValueError):
    """A row that cannot be used, with the reason in plain words."""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _text(row: dict, field: str, *, required: bool) -> str:
    value = row.get(field)
    if value is None:
        if required:
            raise RowError(f"missing field '{field}'")
        return ""
    if not isinstance(value, str):
        raise RowError(f"field '{field}' must be a string, got {_type_name(value)}")
    if required and not value.strip():
        raise RowError(f"field '{field}' is empty")
    return value


def detect_format(row: Any) -> str:
    """The format a row is written in, or RowError when it is not an object of a known format."""
    if not isinstance(row, dict):
        raise RowError(f"row is a JSON {_type_name(row)}, expected an object with the fields of {FORMAT_HELP}")
    if "messages" in row or "conversations" in row:
        return "chat"
    for fmt, (main_field, _, answer_field, _) in _SINGLE_TURN.items():
        if main_field in row or answer_field in row:
            return fmt
    if "text" in row:
        return "text"
    keys = ", ".join(sorted(map(str, row))[:8]) or "none"
    hint = ""
    for key, value in row.items():
        # A wrapper like {"data": [{...}, ...]} is the usual reason: say where the rows are.
        if isinstance(value, list) and value and isinstance(value[0], dict):
            hint = f"; it looks like a wrapper object: put the items of '{key}' one per line instead"
            break
    raise RowError(f"no known format (expected {FORMAT_HELP}); found keys: {keys}{hint}")


def _chat_messages(row: dict) -> list[dict]:
    field = "messages" if "messages" in row else "conversations"
    turns = row[field]
    if not isinstance(turns, list):
        raise RowError(f"field '{field}' must be an array of {{role, content}} objects, got {_type_name(turns)}")
    if not turns:
        raise RowError(f"field '{field}' is an empty array")
    messages = []
    for i, turn in enumerate(turns, 1):
        if not isinstance(turn, dict):
            raise RowError(f"{field}[{i}] must be an object with 'role' and 'content', got {_type_name(turn)}")
        if "role" in turn or "content" in turn:
            role, content = turn.get("role"), turn.get("content")
            role_key, content_key = "role", "content"
        else:
            role, content = turn.get("from"), turn.get("value")
            role_key, content_key = "from", "value"
        if role is None:
            raise RowError(f"{field}[{i}] has no 'role'")
        if not isinstance(role, str):
            raise RowError(f"{field}[{i}].{role_key} must be a string, got {_type_name(role)}")
        norm = SHAREGPT_ROLES.get(role.lower())
        if norm is None:
            raise RowError(f"{field}[{i}].{role_key} is '{role[:40]}', expected one of {', '.join(ROLES)}")
        if content is None:
            raise RowError(f"{field}[{i}] has no 'content'")
        if not isinstance(content, str):
            raise RowError(f"{field}[{i}].{content_key} must be a string, got {_type_name(content)}")
        messages.append({"role": norm, "content": content})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise RowError(f"field '{field}' has no non-empty assistant message to learn from")
    return messages


def _history(row: dict) -> list[dict]:
    """Alpaca's ``history`` (LLaMA-Factory's convention): earlier [instruction, response] pairs, oldest first."""
    history = row.get("history")
    if history is None:
        return []
    if not isinstance(history, list):
        raise RowError(f"field 'history' must be an array of [instruction, response] pairs, got {_type_name(history)}")
    turns = []
    for i, pair in enumerate(history, 1):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(t, str) for t in pair):
            raise RowError(f"history[{i}] must be a pair of strings [instruction, response]")
        turns += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return turns


def to_messages(row: Any, fmt: str | None = None) -> tuple[str, list[dict]]:
    """(format, messages) for a row, or RowError with the first thing wrong with it."""
    fmt = fmt or detect_format(row)
    if fmt == "chat":
        return fmt, _chat_messages(row)
    if fmt in _SINGLE_TURN:
        main_field, extra_field, answer_field, joined = _SINGLE_TURN[fmt]
        main = _text(row, main_field, required=True)
        extra = _text(row, extra_field, required=False)
        answer = _text(row, answer_field, required=True)
        prompt = joined.format(main=main, extra=extra) if extra.strip() else main
        system = _text(row, "system", required=False)
        head = [{"role": "system", "content": system}] if system.strip() else []
        return fmt, head + _history(row) + [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    if fmt == "text":
        # Plain text to learn whole (continued pre-training style): one assistant turn, all of it labelled.
        return fmt, [{"role": "assistant", "content": _text(row, "text", required=True)}]
    raise RowError(f"unknown format '{fmt}' (expected {FORMAT_HELP})")


def chat_template(tokenizer) -> str:
    """The tokenizer's own chat template, or a plain fallback for base models that ship none."""
    return getattr(tokenizer, "chat_template", None) or FALLBACK_TEMPLATE


def render(tokenizer, conversations: list[list[dict]]) -> list[str]:
    """Full chat-template text of each conversation, as the model will see it in training."""
    template = chat_template(tokenizer)
    return [tokenizer.apply_chat_template(c, chat_template=template, tokenize=False) for c in conversations]


def count_tokens(tokenizer, texts: list[str]) -> list[int]:
    """Token count of each text. A fast tokenizer counts in Rust (``encode_batch_fast`` skips the character
    offsets, and no Python list of ids is built per row); a slow one goes the usual way."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [len(e) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def encode_for_training(tokenizer, messages: list[dict], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels of one conversation; only assistant turns are learned (other labels are -100).

    The conversation is rendered prefix by prefix, and each new piece of text is tokenized on its own, so the
    label mask lines up exactly with the tokens whatever the template adds around a turn.
    """
    template = chat_template(tokenizer)
    ids: list[int] = []
    labels: list[int] = []
    previous = ""
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            # The assistant header ("<|im_start|>assistant\n") belongs to the prompt, not to what is learned.
            head = tokenizer.apply_chat_template(
                messages[:i], chat_template=template, tokenize=False, add_generation_prompt=True
            )
            if head.startswith(previous) and len(head) > len(previous):
                piece = tokenizer.encode(head[len(previous):], add_special_tokens=False)
                ids += piece
                labels += [-100] * len(piece)
                previous = head
        text = tokenizer.apply_chat_template(messages[: i + 1], chat_template=template, tokenize=False)
        if not text.startswith(previous):
            # A template that rewrites earlier turns: fall back to learning the whole text.
            ids = tokenizer.encode(text, add_special_tokens=False)
            labels = list(ids)
            previous = text
            continue
        piece = tokenizer.encode(text[len(previous):], add_special_tokens=False)
        ids += piece
        labels += piece if message["role"] == "assistant" else [-100] * len(piece)
        previous = text
    return ids[:max_length], labels[:max_length]
