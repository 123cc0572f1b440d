"""The HTTP client the ``sage finetune`` and ``sage pipeline`` commands share: one way to reach a running studio,
one way to show its errors (the same sentence the UI shows, from ``sage_studio.http_errors``)."""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import typer

from sage_studio.http_errors import error_message
from sage_studio.operations import operation_id_of

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


def follow_operation(http: httpx.Client, operation_id: str, poll_s: float = 1.0) -> Any:
    """Poll ``GET /api/operations/{id}`` until it ends (printing its steps): its result; exit 1 if it failed."""
    said = None
    while True:
        operation = check(http.get(f"/api/operations/{operation_id}"))
        if operation["state"] == "succeeded":
            return operation["result"]
        if operation["state"] == "failed":
            typer.secho(f"error ({operation.get('error_status') or 'operation failed'}): {operation.get('error')}",
                        fg="red", err=True)
            raise typer.Exit(1)
        if operation.get("message") and operation["message"] != said:
            said = operation["message"]
            typer.echo(f"... {said}", err=True)
        time.sleep(poll_s)


def call(http: httpx.Client, method: str, path: str, raw: bool = False, follow: bool = True, **kwargs: Any) -> Any:
    """One request through ``check``; a studio that cannot be reached is exit 2 with a hint. ``follow``: a 202
    with an operation id (a long call the studio runs in the background) is polled to its result."""
    try:
        response = http.request(method, path, **kwargs)
        body = check(response, raw)
        if follow and not raw and response.status_code == 202 and operation_id_of(body):
            return follow_operation(http, operation_id_of(body))
        return body
    except httpx.TransportError as exc:
        typer.secho(f"cannot reach the studio at {http.base_url}: {exc}. Is it running (sage studio start), "
                    "or is --url wrong?", fg="red", err=True)
        raise typer.Exit(2) from None
