"""A keyed second studio app next to the shared one.

The keyed app has no local engine: its remote endpoint is the shared studio's OpenAI API, so it starts in
seconds and still answers chats through the real gateway routes. It has its own SAGE_HOME, so what the tests
and the fuzzer create or delete there never touches the data of other test modules.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

SECURE_PREFIX = "/secure"


@dataclass
class SecureApp:
    url: str
    key: str
    home: Path
    max_body_bytes: int

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def new_home(tmp_path_factory, sage_home: Path, name: str) -> Path:
    """A SAGE_HOME of its own that sees the prepared SmolLM2, as a real one does after ``sage studio start``
    (without it, routes that default to SmolLM2 would convert the GGUF, a minute, inside a request)."""
    from sage_studio.settings import DEFAULT_MODEL_NAME

    home = tmp_path_factory.mktemp(name)
    (home / "models").mkdir()
    prepared = sage_home / "models" / DEFAULT_MODEL_NAME
    if prepared.exists():
        (home / "models" / DEFAULT_MODEL_NAME).symlink_to(prepared.resolve())
    return home


@pytest.fixture(scope="session")
def secure_app(studio, sage_home, tmp_path_factory) -> SecureApp:
    from ray import serve

    from deployments.app import build_studio_app
    from deployments.config import GatewayConfig, RemoteConfig, StudioConfig

    key = "sk-sage-test-" + secrets.token_urlsafe(18)
    home = new_home(tmp_path_factory, sage_home, "secure_home")
    limit = 256 << 10
    config = StudioConfig(
        models=[],
        remote=RemoteConfig(base_url=f"{studio.base_url}/v1", model=studio.model),
        sage_home=str(home),
        gateway=GatewayConfig(api_key=SecretStr(key), max_body_bytes=limit, max_upload_bytes=4 * limit),
    )
    serve.run(build_studio_app(config), name="secure", route_prefix=SECURE_PREFIX)
    app = SecureApp(url=f"{studio.base_url}{SECURE_PREFIX}", key=key, home=home, max_body_bytes=limit)
    assert httpx.get(f"{app.url}/health", timeout=30).status_code == 200
    yield app
    serve.delete("secure")
