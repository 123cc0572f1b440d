"""``sage studio start --share``: a Gradio share link (``*.gradio.live``) to the studio's Serve port.

The tunnel is Gradio's own (``gradio.networking.setup_tunnel``, the same one ``launch(share=True)`` opens), run
in a small process we own so it outlives the CLI and ``stop`` ends it. The link exposes the whole port, so
sharing always runs with an API key: the gateway requires it and the UI asks for it as its login.
It needs internet access to Gradio's share server; without it ``start`` fails with that reason.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

from sage_studio import processes

URL_WAIT_S = 60


def start_share(state, log_path: Path) -> tuple[int, str]:
    """Start the tunnel process for ``state``'s HTTP port; returns (pid, public URL)."""
    from sage_studio.launcher import LaunchError

    url_file = log_path.with_suffix(".url")
    url_file.unlink(missing_ok=True)
    host = "127.0.0.1" if state.http_host in ("0.0.0.0", "::") else state.http_host
    args = [sys.executable, "-m", "sage_studio.share", "--host", host, "--port", str(state.http_port),
            "--url-file", str(url_file)]
    pid = processes.spawn_owned(args, state.run_id, log_path)
    deadline = time.monotonic() + URL_WAIT_S
    while time.monotonic() < deadline:
        if url_file.is_file() and url_file.read_text().strip():
            return pid, url_file.read_text().strip()
        if not processes.pid_alive(pid):
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-5:])
            raise LaunchError(f"Could not open a Gradio share link (it needs internet access to Gradio's share "
                              f"server):\n{tail}")
        time.sleep(0.5)
    processes.terminate_owned(pid, "-none-", grace_s=5)
    raise LaunchError(f"No Gradio share link after {URL_WAIT_S} s; see {log_path}.")


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
