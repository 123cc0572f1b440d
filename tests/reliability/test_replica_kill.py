"""Kill the vLLM engine replica of the shared studio while clients chat (plain and streamed).

Serve restarts the replica. What must hold: no client hangs; every failure is a clean error (a 503 with
Retry-After, or an in-band error event in a stream that had started), and only requests in flight at the kill
fail, plus, if the restart outlasts the gateway's first-output timeout, requests that waited that long (503s);
the replica's vLLM child processes die with it; the studio answers again afterwards.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import httpx
import psutil
import pytest
import ray

from deployments.config import engine_deployment_name
from reliability_helpers import report, wait_for

pytestmark = pytest.mark.reliability

CLIENTS = 4  # one of them streams
CLIENT_TIMEOUT_S = 150  # far above the gateway's 60 s first-output timeout: hitting it means a hang


@dataclass
class Outcome:
    started: float
    ended: float
    stream: bool
    status: int | str  # HTTP status, or the exception class for transport failures
    ok: bool
    clean: bool  # a failure a client can act on: an error body with a message (and Retry-After on 503)
    detail: str = ""


def one_request(client: httpx.Client, model: str, stream: bool) -> Outcome:
    body = {"model": model, "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 24,
            "stream": stream}
    started = time.monotonic()
    try:
        if not stream:
            resp = client.post("/v1/chat/completions", json=body)
            ok = resp.status_code == 200
            clean = ok or (resp.status_code == 503 and "retry-after" in resp.headers
                           and bool(resp.json()["error"]["message"]))
            return Outcome(started, time.monotonic(), False, resp.status_code, ok, clean, "" if ok else resp.text[:200])
        with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                resp.read()
                clean = resp.status_code == 503 and "retry-after" in resp.headers
                return Outcome(started, time.monotonic(), True, resp.status_code, False, clean, resp.text[:200])
            events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
        errors = [e for e in events if e != "[DONE]" and "error" in json.loads(e)]
        done = bool(events) and events[-1] == "[DONE]"
        # A stream cut by the replica's death must say so in-band and not pretend it finished.
        return Outcome(started, time.monotonic(), True, 200, done and not errors, bool(errors) and not done,
                       errors[0][:200] if errors else "")
    except httpx.HTTPError as exc:
        return Outcome(started, time.monotonic(), stream, type(exc).__name__, False, False, str(exc)[:200])


def engine_replica(studio) -> tuple[str, int]:
    from ray.util.state import list_actors

    class_name = f"ServeReplica:studio:{engine_deployment_name(studio.model)}"
    actors = list_actors(address=studio.dashboard_url, filters=[("class_name", "=", class_name),
                                                                 ("state", "=", "ALIVE")])
    assert len(actors) == 1, actors
    return actors[0].name, actors[0].pid


def test_engine_replica_killed_under_traffic(studio, pytestconfig):
    first_chunk_timeout = studio.config.gateway.first_chunk_timeout_s
    outcomes: list[Outcome] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client_loop(stream: bool) -> None:
        with httpx.Client(base_url=studio.base_url, timeout=CLIENT_TIMEOUT_S) as client:
            while not stop.is_set():
                outcome = one_request(client, studio.model, stream)
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=client_loop, args=(i == 0,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: sum(o.ok for o in outcomes) >= 2 * CLIENTS, 120, "traffic to flow before the kill")
        name, pid = engine_replica(studio)
        children = psutil.Process(pid).children(recursive=True)
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
        # Serve brings up a new replica; recovered once a request that started after the kill is answered.
        recovered_in = wait_for(lambda: any(o.ok and o.started > killed_at for o in outcomes), 300,
                                "a request started after the kill to be answered", every_s=0.5)
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(CLIENT_TIMEOUT_S + 10)

    orphans = [p.pid for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    in_flight = [o for o in outcomes if o.started < killed_at < o.ended]
    failed = [o for o in outcomes if not o.ok]
    failed_before = [o for o in failed if o.started < killed_at]
    failed_after = [o for o in failed if o.started >= killed_at]
    report(pytestconfig, f"[replica kill] {len(outcomes)} requests, {len(in_flight)} in flight at the kill, "
                         f"{len(failed)} failed ({len(failed_before)} of those in flight, {len(failed_after)} sent "
                         f"after), statuses {sorted({str(o.status) for o in failed})}, new replica answering "
                         f"{recovered_in:.1f} s after the kill, vLLM child processes left: {len(orphans)}")
    assert not [o for o in outcomes if isinstance(o.status, str)], "a client hung or lost its connection"
    assert all(o.clean for o in failed), [(o.status, o.detail) for o in failed if not o.clean]
    assert len(failed_before) <= len(in_flight)
    # Sent after the kill: they wait for the new replica, and fail (503) only past the first-output timeout.
    assert all(o.status == 503 and o.ended - o.started >= first_chunk_timeout * 0.9 for o in failed_after), \
        [(o.status, round(o.ended - o.started, 1)) for o in failed_after]
    assert orphans == [], f"vLLM processes of the killed replica still run: {orphans}"
    name_after, pid_after = engine_replica(studio)
    assert pid_after != pid
