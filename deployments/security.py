"""The gateway's guards: who may call it, how big a request may be and which browsers may call it cross-site.

``install_security(app, config)`` is the one entry point; ``deployments.api.create_api`` calls it once.

- **API key.** With a key (``gateway.api_key`` in the app config, else the file named by
  ``SAGE_STUDIO_API_KEY_FILE`` or ``SAGE_STUDIO_API_KEY`` in the replica's environment) every route needs ``Authorization: Bearer <key>`` except the few in ``OPEN_PATHS`` (``/health`` and
  the API docs). Protection is by default, not by list, so a route added later is covered without anyone
  remembering to. Keys are compared in constant time and never logged or echoed.
- **Body size.** A declared ``Content-Length`` over the limit is refused with 413 before a byte is read; a body
  without one (chunked) is counted while the route reads it and refused as soon as it passes the limit.
  Multipart uploads get the larger ``max_upload_bytes``; the upload routes cap each file again as they copy it.
- **CORS.** No origin is allowed unless ``gateway.cors_origins`` names it (Starlette's ``CORSMiddleware``).

Engine faults (a replica that dies under a request, back-pressure) are answered in ``deployments/errors.py``.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import FastAPI, HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.config import StudioConfig
from deployments.errors import error_response
from sage_studio.api_key import key_from_environment

logger = logging.getLogger("ray.serve")

# Reachable without a key: liveness for load balancers and the schema/docs (they describe, they hold no data).
OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

MISSING_KEY = (
    "This studio requires an API key: send the header 'Authorization: Bearer <key>' "
    "(the key is SAGE_STUDIO_API_KEY where the studio was started)."
)
WRONG_KEY = "The API key is not valid for this studio."


def resolve_api_key(config: StudioConfig) -> str | None:
    """The key this gateway requires; None: the gateway is open.

    In order: the app config's ``gateway.api_key``; the file named by ``SAGE_STUDIO_API_KEY_FILE``; the variable
    ``SAGE_STUDIO_API_KEY`` (``sage_studio.api_key``). The file is the way to deploy: Ray's runtime-env agent logs
    the ``env_vars`` it sets, so a key passed as a variable ends up in the Ray logs in clear, a file path does not.
    A named file that cannot be read stops the replica (fail closed) rather than leaving the gateway open.
    """
    if config.gateway.api_key is not None:
        return config.gateway.api_key.get_secret_value()
    return key_from_environment()


def key_matches(header: str | None, key: str) -> bool:
    """Whether an ``Authorization`` header carries ``key``; constant time in the key's content."""
    if not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), key.encode("utf-8"))


def route_path(scope: Scope) -> str:
    """The path inside the app: Serve mounts the app under its route prefix, given as ``root_path``."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path or "/"


class _TooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, detail=f"The request body is over the {_human(limit)} limit of this studio.")


def _human(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} bytes"


class SecurityMiddleware:
    """Pure ASGI (not ``BaseHTTPMiddleware``) so streamed answers and request bodies pass through untouched."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int, max_upload_bytes: int):
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        if self.api_key is not None and route_path(scope) not in OPEN_PATHS:
            auth = headers.get("authorization")
            if not key_matches(auth, self.api_key):
                await self._refuse(scope, receive, send, 401, WRONG_KEY if auth else MISSING_KEY,
                                   {"WWW-Authenticate": 'Bearer realm="sage-studio"'})
                return
        multipart = headers.get("content-type", "").lower().startswith("multipart/")
        limit = self.max_upload_bytes if multipart else self.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await self._refuse(scope, receive, send, 400, "The Content-Length header is not a number.")
                return
            if int(declared) > limit:
                await self._refuse(scope, receive, send, 413, _TooLarge(limit).detail)
                return
        await self.app(scope, _counting(receive, limit), send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str,
                      headers: dict | None = None) -> None:
        await error_response(status, message, headers)(scope, receive, send)


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises 413 once the body passes ``limit``; FastAPI re-raises HTTPExceptions from body
    reading, so the gateway's own handler renders it."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge(limit)
        return message

    return wrapped


def install_security(app: FastAPI, config: StudioConfig) -> None:
    """Add the key check, body limits and CORS policy to the gateway's app."""
    gateway = config.gateway
    api_key = resolve_api_key(config)
    app.add_middleware(SecurityMiddleware, api_key=api_key, max_body_bytes=gateway.max_body_bytes,
                       max_upload_bytes=gateway.max_upload_bytes)
    if gateway.cors_origins:
        # Added last, so outermost: preflight OPTIONS requests are answered before the key check.
        app.add_middleware(CORSMiddleware, allow_origins=gateway.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    logger.info("gateway security: api key %s, body limit %s, upload limit %s, CORS origins %s",
                "required" if api_key else "off", _human(gateway.max_body_bytes), _human(gateway.max_upload_bytes),
                gateway.cors_origins or "none")
