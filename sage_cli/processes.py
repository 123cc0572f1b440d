"""Processes the studio owns: started in their own session, tagged by an environment marker, stopped without orphans.

Every process we start (the Ray head, and through it the raylet, the Serve replicas and the vLLM engine processes
those spawn) inherits ``SAGE_STUDIO_RUN_ID``. That marker, not a process name, is how ``stop`` finds what is ours:
other people's Ray clusters on the same machine never carry it, so they are never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import psutil

RUN_ID_VAR = "SAGE_STUDIO_RUN_ID"


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class OwnedProcess:
    """One process that carries our marker."""

    pid: int
    name: str
    cmdline: str


def owned_processes(run_id: str) -> list[OwnedProcess]:
    """Every live process whose environment carries ``SAGE_STUDIO_RUN_ID=run_id``."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        if proc.info["pid"] == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if proc.environ().get(RUN_ID_VAR) != run_id:
                continue
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            continue
        cmd = " ".join(proc.info["cmdline"] or [])[:200]
        found.append(OwnedProcess(proc.info["pid"], proc.info["name"] or "?", cmd))
    return found


def spawn_owned(args: Sequence[str], run_id: str, log_path: Path, env: dict[str, str] | None = None) -> int:
    """Start ``args`` detached (own session, so its whole process group can be signalled), output to ``log_path``.

    Returns the pid, which is also the process-group id.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = dict(env if env is not None else os.environ)
    child_env[RUN_ID_VAR] = run_id
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(args), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=child_env,
            start_new_session=True, close_fds=True,
        )
    return proc.pid


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_all(procs: list[OwnedProcess], sig: int) -> None:
    for proc in procs:
        try:
            os.kill(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(pid: int) -> None:
    # When the caller is the parent (tests start and stop in one process), collect the zombie.
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def terminate_owned(pgid: int | None, run_id: str, grace_s: float = 30.0) -> list[OwnedProcess]:
    """SIGTERM the process group and every marked process, SIGKILL what is left after ``grace_s``.

    Returns the processes still alive at the end (empty when everything is gone).
    """
    # SIGTERM first: `ray start --block` then stops the raylet and GCS in order, and replicas run their shutdown.
    if pgid:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if pgid:
            _reap(pgid)
        if not pid_alive(pgid) and not owned_processes(run_id):
            return []
        time.sleep(0.5)
        if pgid and not pid_alive(pgid):
            # The head is gone; anything left with our marker escaped its group (setsid'ed children).
            _signal_all(owned_processes(run_id), signal.SIGTERM)
    if pgid:
        _signal_group(pgid, signal.SIGKILL)
    _signal_all(owned_processes(run_id), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if pgid:
            _reap(pgid)
        left = owned_processes(run_id)
        if not left:
            return []
        time.sleep(0.5)
    return owned_processes(run_id)
