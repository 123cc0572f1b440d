"""An ASGI middleware that adds tags to the ``<head>`` of the HTML page Gradio serves.

Why: Gradio puts its favicon and custom head tags in the page with JavaScript, after the browser has already asked
for ``/favicon.ico`` at the site root. Under a Serve route prefix (``/ui``) the root belongs to the gateway, so that
request is a 404 logged in the browser console. A static ``<link rel="icon">`` in the served HTML avoids it.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]


class HeadTags:
    """Wraps an ASGI app; inserts ``tags`` right after ``<head>`` in its uncompressed ``text/html`` answers."""

    def __init__(self, app: Callable[..., Awaitable[None]], tags: str):
        self.app = app
        self.tags = tags.encode()

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def patched_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                is_html = headers.get(b"content-type", b"").startswith(b"text/html")
                if is_html and b"content-encoding" not in headers:
                    held = message  # wait for the whole body: its length changes
                    return
                await send(message)
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks).replace(b"<head>", b"<head>" + self.tags, 1)
            headers = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**held, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, patched_send)
