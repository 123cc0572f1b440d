"""Reading the gateway's error answers: every HTTP client of the studio (the UI, the CLI) shows the same sentence."""

from __future__ import annotations

import httpx


def error_message(response: httpx.Response) -> str:
    """The readable message out of the gateway's OpenAI-style error body (or FastAPI's ``detail``)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] if text else f"HTTP {response.status_code} {response.reason_phrase}"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list):  # FastAPI validation errors outside the gateway's handlers
            return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}"
                             for d in detail if isinstance(d, dict))
    return f"HTTP {response.status_code} {response.reason_phrase}"
