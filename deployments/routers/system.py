"""``/api/system``: the cluster's CPUs and GPUs as Ray sees them, and fine-tune settings recommended for them
(a thin layer over ``train.recommend``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool

from sage_studio.model_store import find_model_path
from sage_studio.settings import DEFAULT_MODEL_NAME

router = APIRouter(prefix="/api/system", tags=["system"])


def _unknown(name: str) -> str:
    if name == DEFAULT_MODEL_NAME:
        return (f"The model '{name}' is not prepared yet in this studio's SAGE_HOME, so it cannot be sized: "
                "`sage models prepare` or `sage studio start` prepares it.")
    return (f"Unknown model '{name}': neither a checkpoint folder, a prepared model nor a hub id in the Hugging Face "
            "cache (`sage models pull org/name` fetches one).")


def _gpu_info(model: str | None) -> dict[str, Any]:
    import ray

    from train.jobs import dashboard_address
    from train.recommend import cluster_summary, gpu_inventory, model_size_b, recommendations

    if not ray.is_initialized():
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="The studio is not connected to Ray.")
    cluster = cluster_summary()
    gpus = gpu_inventory()
    sizes: dict[str, float] = {}
    name = model or DEFAULT_MODEL_NAME
    # A look-up only: a GET never prepares (converts) a model, which takes a minute for the default one.
    try:
        path = find_model_path(name)
        if path is not None:
            sizes[name] = round(model_size_b(path), 3)
    except (OSError, ValueError, TypeError):  # an unreadable or odd config.json: sized as unknown
        path = None
    if path is None and model:  # the default model's row is dropped quietly; the standard sizes remain
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=_unknown(name))
    try:
        dashboard = dashboard_address()
    except RuntimeError:
        dashboard = None
    return {
        "cluster": cluster,
        "gpus": [g.model_dump() for g in gpus],
        "recommendations": recommendations(gpus, cluster["cpus"], sizes),
        "dashboard_url": dashboard,
        "note": "Recommendations are suggestions: a fine-tune always runs with the values you submit.",
    }


@router.get("/gpu-info")
async def gpu_info(model: str | None = Query(None, description="Also recommend for this model.")) -> dict[str, Any]:
    """Cluster CPUs/GPUs (from Ray), GPU names and memory, and recommended LoRA settings per model size."""
    return await run_in_threadpool(_gpu_info, model)
