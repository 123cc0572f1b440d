"""``sage studio start --share``: the studio UI launched in the CLI's process with a Gradio share link behind a
login.

A share link exposes the studio to anyone who has it, so it is never made without credentials: the user's
``user:pass`` or generated ones (printed by the caller). Without network Gradio cannot make the link; the UI
still runs locally and ``share_url`` is None, which the caller reports.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import gradio as gr

from ui import strings
from ui.app import LOGIN_USER, build_blocks, launch_kwargs
from ui.client import StudioClient

DEFAULT_USER = LOGIN_USER


@dataclass
class SharedUI:
    """A running shared UI: where it is, the login that guards it, and the Blocks to stop it."""

    local_url: str
    share_url: str | None
    username: str
    password: str
    generated_password: bool
    blocks: gr.Blocks = field(repr=False)

    def wait(self) -> None:
        """Block until Ctrl-C, then stop the server."""
        try:
            self.blocks.block_thread()
        finally:
            self.close()

    def close(self) -> None:
        self.blocks.close()


def parse_auth(auth: str | None) -> tuple[str, str, bool]:
    """``user:pass`` → (user, pass, False); None → (``sage``, a random password, True)."""
    if auth is None:
        return DEFAULT_USER, secrets.token_urlsafe(12), True
    user, sep, password = auth.partition(":")
    if not sep or not user.strip() or not password:
        raise ValueError("--auth must look like user:password (both parts non-empty)")
    return user.strip(), password, False


def launch_shared(base_url: str, auth: str | None = None, api_key: str | None = None, host: str = "127.0.0.1",
                  port: int | None = None, dashboard_url: str | None = None, share: bool = True) -> SharedUI:
    """Launch the studio UI in this process with a share link (``share=True``) protected by ``auth``.

    Returns at once (the server runs in a thread); call ``wait()`` to keep the process serving."""
    user, password, generated = parse_auth(auth)
    blocks = build_blocks(StudioClient(base_url, api_key), dashboard_url)
    _, local_url, share_url = blocks.launch(
        share=share, auth=(user, password), auth_message=strings.SHARE_LOGIN_MESSAGE,
        server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, show_error=False,
        **launch_kwargs(),
    )
    return SharedUI(local_url=local_url, share_url=share_url, username=user, password=password,
                    generated_password=generated, blocks=blocks)
