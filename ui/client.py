"""The UI's one HTTP client of the studio gateway.

Every tab talks to the studio through this class only, so the UI works the same against a laptop's
``serve run`` and a cluster: it needs a base URL and, when the gateway has one, an API key. Failures of any kind
(connection refused, timeouts, 4xx/5xx, an error in the middle of a stream) become one exception, ``ApiError``,
whose message is a sentence a person can read; a route the gateway does not have yet is flagged as
``not_available`` so a tab can say so instead of failing.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx

from sage_studio.http_errors import error_message
from sage_studio.operations import operation_id_of

# What FastAPI answers for a path or method it has no route for (the gateway keeps these messages).
_NO_ROUTE_MESSAGES = {"Not Found", "Method Not Allowed"}


@dataclass(frozen=True)
class StreamPiece:
    """A piece of a streamed reply and the model that wrote it (the gateway names it in every chunk)."""

    text: str
    model: str


class ApiError(Exception):
    """A failed call to the studio API, with a message meant for the user."""

    def __init__(self, message: str, status: int | None = None, not_available: bool = False):
        super().__init__(message)
        self.message = message
        self.status = status
        self.not_available = not_available


class StudioClient:
    """Async client of the studio gateway (``/v1``, ``/sessions``, ``/memory``, ``/api``)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the studio URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        # One pooled client per event loop: Gradio runs every handler on its server's loop, tests use their own.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=self.timeout)
            self._loop = loop
        return self._client

    def _transport_error(self, exc: httpx.HTTPError) -> ApiError:
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(f"The studio API at {self.base_url} did not answer in time ({self.timeout:.0f} s).")
        return ApiError(f"Cannot reach the studio API at {self.base_url} ({type(exc).__name__}). "
                        "Is the studio running?")

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.is_success:
            return
        message = error_message(response)
        missing = response.status_code in (404, 405) and message in _NO_ROUTE_MESSAGES
        raise ApiError(message, status=response.status_code, not_available=missing)

    async def request(self, method: str, path: str, *, as_text: bool = False, follow: bool = False,
                      **kwargs: Any) -> Any:
        """One call; returns the decoded JSON (the text for non-JSON answers or with ``as_text``, None when empty).
        ``follow``: a 202 with an operation id is polled until the operation ends, and its result returned."""
        try:
            response = await self._http().request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        self._check(response)
        if as_text:
            return response.text
        if not response.content:
            return None
        if "json" in response.headers.get("content-type", ""):
            body = response.json()
            if follow and response.status_code == 202 and operation_id_of(body):
                return await self.follow_operation(operation_id_of(body))
            return body
        return response.text

    async def follow_operation(self, operation_id: str, poll_s: float = 1.0, timeout_s: float = 3600) -> Any:
        """Poll ``GET /api/operations/{id}`` until it ends: its result, or ``ApiError`` with why it failed."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            operation = await self.request("GET", f"/api/operations/{operation_id}")
            if operation["state"] == "succeeded":
                return operation["result"]
            if operation["state"] == "failed":
                raise ApiError(operation.get("error") or "The operation failed.", status=operation.get("error_status"))
            if asyncio.get_running_loop().time() > deadline:
                raise ApiError(f"The studio is still working on it ({operation.get('message') or operation['state']}"
                               f"); operation {operation_id}.")
            await asyncio.sleep(poll_s)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- chat and models --------------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await self.request("GET", "/health")

    async def models(self) -> list[dict[str, Any]]:
        """``/v1/models``: what the chat can ask for by name."""
        return (await self.request("GET", "/v1/models"))["data"]

    async def stream_chat(
        self, messages: list[dict[str, str]], model: str, session_id: str | None = None, max_tokens: int = 256,
        temperature: float = 0.7,
    ) -> AsyncIterator[StreamPiece]:
        """Stream a chat completion; yields text pieces as they arrive. Raises ``ApiError`` on any failure,
        also one reported in the middle of the stream."""
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True, "max_tokens": max_tokens,
                                "temperature": temperature}
        if session_id:
            body["session_id"] = session_id
        try:
            async with self._http().stream("POST", "/v1/chat/completions", json=body) as response:
                if not response.is_success:
                    await response.aread()
                    self._check(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise ApiError(chunk["error"].get("message") or "The model failed while answering.", 500)
                    for choice in chunk.get("choices", []):
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield StreamPiece(piece, chunk.get("model", model))
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None

    # -- sessions and memory ----------------------------------------------------------------------------------

    async def list_sessions(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/sessions")

    async def create_session(self, title: str | None = None) -> dict[str, Any]:
        return await self.request("POST", "/sessions", json={"title": title} if title else {})

    async def get_session(self, session_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/sessions/{session_id}")

    async def rename_session(self, session_id: str, title: str) -> dict[str, Any]:
        return await self.request("PATCH", f"/sessions/{session_id}/title", json={"title": title})

    async def clear_session(self, session_id: str) -> dict[str, Any]:
        return await self.request("POST", f"/sessions/{session_id}/clear")

    async def delete_session(self, session_id: str) -> dict[str, Any]:
        return await self.request("DELETE", f"/sessions/{session_id}")

    async def rate_message(self, session_id: str, message_index: int, rating: int,
                           comment: str | None = None) -> dict[str, Any]:
        body = {"message_index": message_index, "rating": rating, **({"comment": comment} if comment else {})}
        return await self.request("POST", f"/sessions/{session_id}/feedback", json=body)

    async def dataset_from_feedback(self, min_rating: int = 1, model: str | None = None,
                                    max_length: int | None = None) -> dict[str, Any]:
        body = {k: v for k, v in {"min_rating": min_rating, "model": model, "max_length": max_length}.items()
                if v is not None}
        return await self.request("POST", "/api/datasets/from-feedback", json=body)

    async def session_memory(self, session_id: str, query: str | None = None) -> dict[str, Any]:
        params = {"query": query} if query else None
        return await self.request("GET", f"/sessions/{session_id}/memory", params=params)

    async def memory_config(self) -> dict[str, Any]:
        return await self.request("GET", "/memory/config")

    async def memory_stats(self, session_id: str | None = None) -> dict[str, Any]:
        return await self.request("GET", "/memory/stats", params={"session_id": session_id} if session_id else None)

    # -- fine-tuning, datasets, models, system ----------------------------------------------------------------

    async def upload_dataset(self, filename: str, content: bytes, **fields: Any) -> dict[str, Any]:
        data = {k: str(v) for k, v in fields.items() if v is not None}
        return await self.request("POST", "/api/datasets", files={"file": (filename, content)}, data=data,
                                  follow=True)

    async def list_datasets(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/api/datasets")

    async def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/api/datasets/{dataset_id}")

    async def prepare_docs_dataset(self, model: str | None = None, max_length: int | None = None) -> dict[str, Any]:
        body = {k: v for k, v in {"model": model, "max_length": max_length}.items() if v is not None}
        return await self.request("POST", "/api/finetune/prepare-docs-dataset", json=body)

    async def gpu_info(self, model: str | None = None) -> dict[str, Any]:
        """Cluster resources, GPUs and recommended fine-tune settings (also for ``model`` when given)."""
        return await self.request("GET", "/api/system/gpu-info", params={"model": model} if model else None)

    async def create_finetune(self, config: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", "/api/finetune/create", json=config)

    async def list_tasks(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/api/finetune/tasks")

    async def get_task(self, task_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/api/finetune/tasks/{task_id}")

    async def task_logs(self, task_id: str) -> Any:
        return await self.request("GET", f"/api/finetune/tasks/{task_id}/logs")

    async def task_metrics(self, task_id: str) -> Any:
        return await self.request("GET", f"/api/finetune/tasks/{task_id}/metrics")

    async def cancel_task(self, task_id: str) -> dict[str, Any]:
        return await self.request("POST", f"/api/finetune/tasks/{task_id}/cancel")

    async def finetune_models(self) -> Any:
        return await self.request("GET", "/api/finetune/models")

    async def current_model(self) -> dict[str, Any]:
        return await self.request("GET", "/api/finetune/current-model")

    async def switch_model(self, model: str) -> dict[str, Any]:
        return await self.request("POST", "/api/finetune/switch-model", json={"model": model}, follow=True)

    async def use_as_backend(self, task_id: str) -> dict[str, Any]:
        return await self.request("POST", "/api/finetune/use-as-backend", json={"task_id": task_id}, follow=True)

    # -- pipelines --------------------------------------------------------------------------------------------

    async def operators(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/api/operators"))["operators"]

    async def list_pipelines(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/api/pipelines")

    async def get_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/api/pipelines/{pipeline_id}")

    async def save_pipeline(self, pipeline: dict[str, Any]) -> dict[str, Any]:
        """Create the pipeline when it has no id yet, else replace the saved one."""
        if pipeline.get("id"):
            return await self.request("PUT", f"/api/pipelines/{pipeline['id']}", json=pipeline)
        return await self.request("POST", "/api/pipelines", json=pipeline)

    async def validate_pipeline(self, pipeline: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", "/api/pipelines/validate", json=pipeline)

    async def run_pipeline(self, pipeline: dict[str, Any], run_input: Any) -> dict[str, Any]:
        """Run the editor's graph as it is (saved or not) on one input."""
        return await self.request("POST", "/api/pipelines/run", json={"pipeline": pipeline, "input": run_input},
                                  follow=True)

    async def templates(self) -> list[dict[str, str]]:
        return await self.request("GET", "/api/pipelines/templates")

    async def create_from_template(self, name: str) -> dict[str, Any]:
        return await self.request("POST", f"/api/pipelines/templates/{name}")

    async def import_pipeline(self, filename: str, content: bytes) -> dict[str, Any]:
        return await self.request("POST", "/api/pipelines/import", files={"file": (filename, content)})

    async def export_pipeline(self, pipeline_id: str) -> str:
        return await self.request("GET", f"/api/pipelines/{pipeline_id}/export", as_text=True)

    async def python_export(self, pipeline_id: str) -> str:
        return await self.request("GET", f"/api/pipelines/{pipeline_id}/python", as_text=True)
