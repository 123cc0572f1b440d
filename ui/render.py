"""Small HTML pieces the tabs share: notices, cards, usage bars, key/value tables.

Everything user-supplied goes through ``html.escape``: titles, model names and messages come from the API and may
hold markup.
"""

from __future__ import annotations

import html
import json
from typing import Any, Iterable

from ui import strings
from ui.client import ApiError

esc = html.escape


def notice(text: str, kind: str = "info") -> str:
    """A one-line banner: kind is info, ok, warn or error."""
    if not text:
        return ""
    icon = {"ok": "✓", "warn": "!", "error": "✕"}.get(kind, "i")
    return (f'<div class="sage-notice sage-{kind}" role="{"alert" if kind == "error" else "status"}">'
            f'<span class="sage-icon">{icon}</span><span class="sage-text">{esc(text)}</span></div>')


def preview(value: Any, limit: int = 400) -> str:
    """A value as a short text: strings as they are, anything else as JSON, cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + " …"


def error_text(exc: Exception, feature: str) -> str:
    """The sentence shown for a failed API call about ``feature`` (e.g. "Sessions")."""
    if isinstance(exc, ApiError):
        if exc.not_available:
            return strings.NOT_AVAILABLE.format(feature=feature)
        return strings.API_FAILED.format(feature=feature, message=exc.message)
    # Anything else is a bug in the UI; still a sentence, never a trace.
    return strings.UI_FAILED.format(feature=feature, message=f"{type(exc).__name__}: {exc}")


def error_notice(exc: Exception, feature: str) -> str:
    kind = "warn" if isinstance(exc, ApiError) and exc.not_available else "error"
    return notice(error_text(exc, feature), kind)


def usage_bar(percent: float, label: str = "") -> str:
    """A horizontal bar filled to ``percent`` (clamped to 0-100), green → amber → red as it fills."""
    pct = max(0.0, min(100.0, float(percent or 0)))
    level = "high" if pct >= 90 else "mid" if pct >= 60 else "low"
    text = esc(label) if label else f"{pct:.0f}%"
    return (f'<div class="sage-bar" title="{pct:.1f}%"><div class="sage-bar-fill sage-{level}" '
            f'style="width:{pct:.1f}%"></div><span class="sage-bar-label">{text}</span></div>')


def card(title: str, body: str, badge: str = "", active: bool = False) -> str:
    """A titled card; ``body`` is HTML the caller built (escape its parts)."""
    badge_html = f'<span class="sage-badge">{esc(badge)}</span>' if badge else ""
    cls = "sage-card sage-active" if active else "sage-card"
    return f'<div class="{cls}"><div class="sage-card-title">{esc(title)}{badge_html}</div>{body}</div>'


def cards(items: Iterable[str]) -> str:
    return '<div class="sage-cards">' + "".join(items) + "</div>"


def kv_table(rows: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of labels and values."""
    body = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(fmt(v))}</td></tr>" for k, v in rows)
    return f'<table class="sage-kv">{body}</table>'


def fmt(value: Any) -> str:
    """A value as a person reads it: no trailing ``.0``, lists joined, None as a dash."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) or "—"
    return str(value)
