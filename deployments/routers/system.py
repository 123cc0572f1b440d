"""``/api/system``: the cluster's CPUs and GPUs as Ray sees them, and fine-tune settings recommended for them
(a thin layer over ``train.recommend``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool

from sage_studio.settings import DEFAULT_MODEL_NAME

router = APIRouter(prefix="/api/system", tags=["system"])


def _gpu_info(model: str | None) -> dict[str, Any]:
    import ray

    from train.jobs import dashboard_address
    from train.recommend import cluster_summary, gpu_inventory, model_size_b, recommendations

    if not ray.is_initialized():
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="The studio is not connected to Ray.")
    cluster = cluster_summary()
    gpus = gpu_inventory()
    sizes: dict[str, float] = {}
    names = [model] if model else [DEFAULT_MODEL_NAME]
    for name in names:
        try:
            from sage_studio.model_store import resolve_model_path

            sizes[name] = round(model_size_b(resolve_model_path(name)), 3)
        except Exception:  # noqa: BLE001 - an unknown model only loses its own row; the standard sizes remain
            if model:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"Unknown model '{name}'.") from None
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
