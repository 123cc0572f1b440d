"""Ray Serve's own floor on this machine, with no model: a GET through Serve's proxy to a bare deployment, to a
FastAPI ingress, and to a FastAPI ingress that makes one streamed handle call (the studio's gateway → engine shape),
each against the same FastAPI app on plain uvicorn. p50 of 50 requests after 5 warm-ups.

    .venv/bin/python bench/serve_floor.py
"""
import asyncio
import socket
import statistics
import subprocess
import sys
import time

import httpx
import ray
from ray import serve
from fastapi import FastAPI

def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

@serve.deployment
class Bare:
    async def __call__(self, request):
        return "ok"

@serve.deployment
class Leaf:
    async def stream(self):
        yield "a"

app = FastAPI()

@serve.deployment
@serve.ingress(app)
class Api:
    def __init__(self, leaf):
        self.leaf = leaf
    @app.get("/health")
    async def health(self):
        return {"ok": True}
    @app.get("/hop")
    async def hop(self):
        async for x in self.leaf.options(stream=True).stream.remote():
            return {"x": x}

async def measure(url, n=50):
    async with httpx.AsyncClient(timeout=30) as c:
        for _ in range(5): await c.get(url)
        xs = []
        for _ in range(n):
            t = time.perf_counter(); await c.get(url); xs.append(time.perf_counter() - t)
    return statistics.median(xs) * 1000

if __name__ == "__main__":
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    p = port()
    serve.start(http_options={"host": "127.0.0.1", "port": p})
    serve.run(Bare.bind(), name="bare", route_prefix="/bare")
    serve.run(Api.bind(Leaf.bind()), name="api", route_prefix="/api")
    up = port()
    uv = subprocess.Popen([sys.executable, "-c", f"import uvicorn\nfrom fastapi import FastAPI\na=FastAPI()\n@a.get('/health')\nasync def h(): return {{'ok': True}}\nuvicorn.run(a, host='127.0.0.1', port={up}, log_level='error')"])
    time.sleep(4)
    r = {k: asyncio.run(measure(u)) for k, u in [("uvicorn fastapi", f"http://127.0.0.1:{up}/health"),
         ("serve bare", f"http://127.0.0.1:{p}/bare"), ("serve fastapi", f"http://127.0.0.1:{p}/api/health"),
         ("serve fastapi + handle stream hop", f"http://127.0.0.1:{p}/api/hop")]}
    uv.kill()
    for k, v in r.items(): print(f"{k}: p50 {v:.1f} ms")
