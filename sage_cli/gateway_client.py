"""The HTTP client the ``sage finetune`` and ``sage pipeline`` commands share: one way to reach a running studio,
one way to show its errors (the same sentence the UI shows, from ``sage_studio.http_errors``)."""

from __future__ import annotations

import os
from typing import Any

import httpx
import typer

from sage_studio.http_errors import error_message

DEFAULT_STUDIO_URL = "http://127.0.0.1:8000"
URL_OPTION = typer.Option(DEFAULT_STUDIO_URL, "--url", envvar="SAGE_STUDIO_URL", help="The studio (env SAGE_STUDIO_URL).")


def client(url: str | None) -> httpx.Client:
    """A client of the studio at ``url``, with the key of ``SAGE_STUDIO_API_KEY`` when it is set."""
    headers = {}
    if key := os.environ.get("SAGE_STUDIO_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    return httpx.Client(base_url=(url or DEFAULT_STUDIO_URL).rstrip("/"), headers=headers,
                        timeout=httpx.Timeout(600, connect=10))


def check(response: httpx.Response, raw: bool = False) -> Any:
    """The decoded JSON answer (the response itself when ``raw``); on an error the gateway's message and exit 1."""
    if response.is_success:
        return response if raw else (response.json() if response.content else {})
    typer.secho(f"error ({response.status_code}): {error_message(response)}", fg="red", err=True)
    raise typer.Exit(1)


def call(http: httpx.Client, method: str, path: str, raw: bool = False, **kwargs: Any) -> Any:
    """One request through ``check``; a studio that cannot be reached is exit 2 with a hint."""
    try:
        return check(http.request(method, path, **kwargs), raw)
    except httpx.TransportError as exc:
        typer.secho(f"cannot reach the studio at {http.base_url}: {exc}. Is it running (sage studio start), "
                    "or is --url wrong?", fg="red", err=True)
        raise typer.Exit(2) from None
