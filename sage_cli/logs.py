"""``sage studio logs``: the studio's Serve logs on every node, read (and followed) through Ray's log API.

Going through the dashboard rather than local files means the same command works on a laptop and on a cluster
whose replicas run on other machines: Ray's agents on each node serve their own log files.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

from deployments.serve_rest import enable_ray_auth_if_configured


@dataclass(frozen=True)
class LogSource:
    """One log stream: a file on a node, or an actor's stdout/stderr."""

    label: str
    node_id: str | None = None
    filename: str | None = None
    actor_id: str | None = None
    suffix: str = "out"


def log_sources(dashboard_url: str, ray_address: str, replica_output: bool = True) -> list[LogSource]:
    """Serve's log files on every alive node (controller, proxies, replicas) and, optionally, each studio replica's
    stderr (where the engines' own output and tracebacks land)."""
    from ray.util.state import list_actors, list_logs, list_nodes

    enable_ray_auth_if_configured()
    sources = []
    for node in list_nodes(address=dashboard_url, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False):
        files = list_logs(address=ray_address, node_id=node.node_id, glob_filter="serve/*.log")
        for name in sorted({f for group in files.values() for f in group}):
            short = name.rsplit("/", 1)[-1].removesuffix(".log")
            sources.append(LogSource(label=f"{node.node_ip}:{short}", node_id=node.node_id, filename=name))
    if replica_output:
        actors = list_actors(address=dashboard_url, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False,
                             detail=True)
        for actor in actors:
            if (actor.class_name or "").startswith("ServeReplica:"):
                label = actor.class_name.split(":", 1)[1] + ".err"
                sources.append(LogSource(label=label, actor_id=actor.actor_id, suffix="err"))
    return sources


def _read(ray_address: str, source: LogSource, tail: int, follow: bool) -> Iterator[str]:
    from ray.util.state import get_log

    # Ray's log API takes the cluster's Ray (GCS) address and finds the dashboard from there.
    kwargs = dict(address=ray_address, tail=tail, follow=follow, errors="replace", filter_ansi_code=True)
    if source.actor_id:
        yield from get_log(actor_id=source.actor_id, suffix=source.suffix, **kwargs)
    else:
        yield from get_log(node_id=source.node_id, filename=source.filename, **kwargs)


def stream_logs(
    dashboard_url: str,
    ray_address: str,
    emit: Callable[[str], None],
    tail: int = 50,
    follow: bool = False,
    match: str | None = None,
    replica_output: bool = True,
    stop: threading.Event | None = None,
) -> int:
    """Print the last ``tail`` lines of every source (``match``: only sources whose label contains it), then keep
    printing new lines while ``follow``. Returns the number of sources read."""
    sources = [s for s in log_sources(dashboard_url, ray_address, replica_output) if not match or match in s.label]
    if not follow:
        for source in sources:
            for chunk in _read(ray_address, source, tail, False):
                for line in chunk.splitlines():
                    emit(f"[{source.label}] {line}")
        return len(sources)
    lines: queue.Queue[str] = queue.Queue()
    stop = stop or threading.Event()

    def pump(source: LogSource) -> None:
        try:
            for chunk in _read(ray_address, source, tail, True):
                for line in chunk.splitlines():
                    lines.put(f"[{source.label}] {line}")
                if stop.is_set():
                    return
        except Exception as exc:  # noqa: BLE001 - a replica that goes away ends its stream; say so, keep the rest
            lines.put(f"[{source.label}] (log stream ended: {type(exc).__name__})")

    for source in sources:
        threading.Thread(target=pump, args=(source,), daemon=True).start()
    while not stop.is_set():
        try:
            emit(lines.get(timeout=0.5))
        except queue.Empty:
            continue
    return len(sources)
