"""The studio's API key as the Serve replicas get it: a file, owner-only, named by ``SAGE_STUDIO_API_KEY_FILE``.

Why a file and not the key itself: Ray's runtime-env agent logs the ``env_vars`` it sets up (at INFO, in clear),
and the Serve config holds every application's ``args`` in clear (the dashboard shows both). A file path in
either gives nothing away. ``sage studio start`` writes ``SAGE_HOME/studio/api_key`` (0600) and passes its path;
the gateway (``deployments.security``) and the UI deployment read it with ``key_from_environment``.
"""

from __future__ import annotations

import os
from pathlib import Path

from sage_studio.files import atomic_write

KEY_VAR = "SAGE_STUDIO_API_KEY"
KEY_FILE_VAR = "SAGE_STUDIO_API_KEY_FILE"
KEY_FILE_NAME = "api_key"
# ``--auth user:pass``: the UI's own login, kept like the key (0600 file, only its path in the environment).
LOGIN_FILE_VAR = "SAGE_STUDIO_UI_LOGIN_FILE"
LOGIN_FILE_NAME = "ui_login"


def write_key_file(path: Path, key: str) -> Path:
    """Write ``key`` to ``path`` owner-only and atomically: a reader sees the old key or the new one, never a
    partial file. ``atomic_write`` writes through ``tempfile.mkstemp``, whose file is 0600 from its first byte, and
    ``os.replace`` keeps that mode."""
    if not key.strip():
        raise ValueError("refusing to write an empty API key")
    atomic_write(path, key.strip() + "\n")
    return path


def read_key_file(path: str | Path) -> str:
    """The key in ``path``; ``RuntimeError`` (fail closed) when the file cannot be read or is empty."""
    try:
        key = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RuntimeError(f"{KEY_FILE_VAR}={path} cannot be read ({type(exc).__name__}); "
                           "refusing to start without the studio's API key") from None
    if not key:
        raise RuntimeError(f"{KEY_FILE_VAR}={path} is empty; refusing to start without the studio's API key")
    return key


def key_from_environment() -> str | None:
    """The key this process's environment gives: the file named by ``SAGE_STUDIO_API_KEY_FILE``, else
    ``SAGE_STUDIO_API_KEY``; None when neither is set.

    A named file that cannot be read, or is empty, raises ``RuntimeError`` (fail closed): a replica that was
    meant to have a key never starts without it. The environment is read directly rather than through the cached
    ``Settings``: in a replica it is what the deployer set.
    """
    if key_file := os.environ.get(KEY_FILE_VAR):
        return read_key_file(key_file)
    return os.environ.get(KEY_VAR) or None


def parse_login(text: str) -> tuple[str, str]:
    """``user:pass`` → (user, pass); ``ValueError`` with what is wrong otherwise (the password may hold colons)."""
    user, sep, password = text.partition(":")
    if not sep or not user.strip() or not password:
        raise ValueError("expected USER:PASSWORD with a non-empty user name and password, e.g. --auth alice:s3cret")
    return user.strip(), password


def login_from_environment() -> tuple[str, str] | None:
    """The UI login named by ``SAGE_STUDIO_UI_LOGIN_FILE`` (``user:pass``); None when unset. A named file that
    cannot be read or parsed raises ``RuntimeError``: a UI that was meant to ask for a login never starts open."""
    if not (path := os.environ.get(LOGIN_FILE_VAR)):
        return None
    try:
        return parse_login(Path(path).expanduser().read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RuntimeError(f"{LOGIN_FILE_VAR}={path} cannot be used ({exc}); refusing to serve the UI without its "
                           "login") from None
