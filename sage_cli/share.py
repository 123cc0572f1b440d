"""``sage studio start --share``: a Gradio share link (``*.gradio.live``) to the studio's Serve port.

The tunnel is Gradio's own (``gradio.networking.setup_tunnel``, the same one ``launch(share=True)`` opens), run
in a small process we own so it outlives the CLI and ``stop`` ends it. The link exposes the whole port, so
sharing always runs with an API key: the gateway requires it and the UI asks for it as its login.
It needs internet access to Gradio's share server; without it the studio still starts, with no link and the
reason recorded in the state (``share_error``), which ``start`` and ``status`` print.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

from sage_cli import processes

URL_WAIT_S = 60


def start_share(state, log_path: Path) -> tuple[int | None, str | None]:
    """Start the tunnel process for ``state``'s HTTP port; returns (pid, public URL).

    When no link can be made (no network, Gradio's share server unreachable, no link in time) it returns
    (None, None) and sets ``state.share_error`` to why: the studio runs on without a link."""
    url_file = log_path.with_suffix(".url")
    url_file.unlink(missing_ok=True)
    host = "127.0.0.1" if state.http_host in ("0.0.0.0", "::") else state.http_host
    args = [sys.executable, "-m", "sage_cli.share", "--host", host, "--port", str(state.http_port),
            "--url-file", str(url_file)]
    pid = processes.spawn_owned(args, state.run_id, log_path)
    deadline = time.monotonic() + URL_WAIT_S
    while time.monotonic() < deadline:
        if url_file.is_file() and url_file.read_text().strip():
            state.share_error = None
            return pid, url_file.read_text().strip()
        if not processes.pid_alive(pid):
            state.share_error = (f"the share link could not be made (it needs internet access to Gradio's share "
                                 f"server): {_failure(log_path)}")
            return None, None
        time.sleep(0.5)
    processes.terminate_owned(pid, "-none-", grace_s=5)
    state.share_error = f"the share link could not be made: no link from Gradio after {URL_WAIT_S} s (see {log_path})"
    return None, None


def _failure(log_path: Path) -> str:
    """The tunnel process's own last words (its ``share link failed: ...`` line)."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith("share link failed:")]
    return (failed or lines or ["(no output)"])[-1]


def new_login_key() -> str:
    return "sk-sage-" + secrets.token_urlsafe(24)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Hold a Gradio share tunnel to a local port.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--url-file", type=Path, required=True)
    args = parser.parse_args(argv)
    from gradio.networking import setup_tunnel

    try:
        url = setup_tunnel(args.host, args.port, secrets.token_urlsafe(32), None, None)
    except Exception as exc:  # noqa: BLE001 - report and leave at once: gradio's own threads would keep us alive
        print(f"share link failed: {exc} ({exc.__cause__ or 'no detail'})", flush=True)
        os._exit(1)
    args.url_file.write_text(url)
    print(f"share link: {url} → http://{args.host}:{args.port}", flush=True)
    while True:  # the tunnel (an frpc child process) lives as long as we do
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
