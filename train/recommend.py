"""What the cluster has (CPUs, GPUs with names and memory, from Ray) and fine-tune settings that fit it.

Recommendations are shown next to the form; the studio never changes what the user asked for. The memory model
is deliberately simple (weights + activations per token, LoRA states negligible) and every figure says why.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

STANDARD_SIZES_B = (0.135, 0.5, 1.5, 3.0, 7.0, 13.0)
SERVING_MAX_LORA_RANK = 16  # the engines' default max_lora_rank: a larger rank trains but will not serve


class GpuInfo(BaseModel):
    node_ip: str
    index: int
    name: str
    memory_total_mib: int
    memory_used_mib: int | None = None


class Recommendation(BaseModel):
    """Suggested settings for one model size on this cluster."""

    model_size_b: float = Field(description="Parameters, in billions.")
    fits: bool = Field(description="Whether a LoRA fine-tune of this size is expected to fit at all.")
    use_gpu: bool
    num_workers: int
    cpus_per_worker: float
    batch_size: int
    max_length: int
    lora_r: int
    notes: list[str] = Field(default_factory=list, description="Why these values, and warnings.")


def parse_nvidia_smi(text: str, node_ip: str) -> list[GpuInfo]:
    """Rows of ``nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0].isdigit():
            used = int(float(parts[3])) if len(parts) > 3 and parts[3].replace(".", "").isdigit() else None
            gpus.append(GpuInfo(node_ip=node_ip, index=int(parts[0]), name=parts[1],
                                memory_total_mib=int(float(parts[2])), memory_used_mib=used))
    return gpus


def _probe_gpus() -> list[dict]:
    import ray

    ip = ray.util.get_node_ip_address()
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total,memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
        return [g.model_dump() for g in parse_nvidia_smi(out, ip)]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import torch

        return [
            GpuInfo(node_ip=ip, index=i, name=torch.cuda.get_device_name(i),
                    memory_total_mib=torch.cuda.get_device_properties(i).total_memory // (1 << 20)).model_dump()
            for i in range(torch.cuda.device_count())
        ]
    except Exception:  # noqa: BLE001 - no driver / no torch CUDA: report no GPU names rather than fail
        return []


def gpu_inventory() -> list[GpuInfo]:
    """GPU names and memory of every alive node that Ray says has GPUs (one probe task pinned to each)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_probe_gpus)
    refs = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
        for node in ray.nodes()
        if node.get("Alive") and node.get("Resources", {}).get("GPU", 0) > 0
    ]
    return [GpuInfo(**g) for found in ray.get(refs, timeout=60) for g in found] if refs else []


def cluster_summary() -> dict[str, Any]:
    """CPUs/GPUs/memory in total and free, per node, from Ray."""
    import ray

    total, free = ray.cluster_resources(), ray.available_resources()
    nodes = [
        {"node_ip": n.get("NodeManagerAddress"), "alive": n.get("Alive"),
         "cpus": n.get("Resources", {}).get("CPU", 0), "gpus": n.get("Resources", {}).get("GPU", 0),
         "accelerator_types": [k.split(":", 1)[1] for k in n.get("Resources", {}) if k.startswith("accelerator_type:")]}
        for n in ray.nodes()
    ]
    return {
        "cpus": total.get("CPU", 0), "cpus_free": free.get("CPU", 0),
        "gpus": total.get("GPU", 0), "gpus_free": free.get("GPU", 0),
        "memory_gib": round(total.get("memory", 0) / (1 << 30), 1),
        "nodes": [n for n in nodes if n["alive"]],
    }


def model_size_b(model_path: Path) -> float:
    """Parameter count (billions) estimated from a Llama-style config.json."""
    cfg = json.loads((Path(model_path) / "config.json").read_text())
    hidden, layers = cfg.get("hidden_size", 0), cfg.get("num_hidden_layers", 0)
    inter = cfg.get("intermediate_size", 4 * hidden)
    heads = cfg.get("num_attention_heads", 1) or 1
    kv = cfg.get("num_key_value_heads", heads)
    attn = 2 * hidden * hidden + 2 * hidden * (hidden * kv // heads)
    embed = cfg.get("vocab_size", 0) * hidden * (1 if cfg.get("tie_word_embeddings", True) else 2)
    return (embed + layers * (attn + 3 * hidden * inter)) / 1e9


def _shape(size_b: float) -> tuple[int, int]:
    """(layers, hidden) typical of a decoder of this size, for the activation estimate."""
    hidden = int(2 ** round(math.log2(max(256.0, 4096 * (size_b / 7) ** 0.5))))
    layers = max(12, min(80, round(size_b * 1e9 / (12 * hidden * hidden))))
    return layers, hidden


def recommend(size_b: float, gpus: list[GpuInfo], cpus: float) -> Recommendation:
    """Settings for a LoRA fine-tune of a ``size_b``-billion model on this cluster."""
    rank = 16 if size_b >= 1 else 8
    if not gpus:
        threads = max(1, int(cpus))
        notes = [f"No GPU: 1 worker using {threads} CPU threads (data parallelism across processes on one "
                 "CPU host only adds overhead)."]
        fits = size_b <= 3
        if size_b > 1:
            notes.append("Over 1B parameters on CPU: expect hours per epoch; prefer a GPU cluster.")
        if not fits:
            notes.append("Over 3B parameters does not train in useful time on CPU.")
        return Recommendation(model_size_b=size_b, fits=fits, use_gpu=False, num_workers=1, cpus_per_worker=threads,
                              batch_size=8 if size_b < 0.5 else 4, max_length=512, lora_r=rank, notes=notes)
    mem_gib = min(g.memory_total_mib for g in gpus) / 1024
    layers, hidden = _shape(size_b)
    weights_gib = size_b * 2  # bf16
    act_per_token_gib = layers * hidden * 34 / (1 << 30)  # bf16 activations kept for backward, no checkpointing
    budget = mem_gib * 0.85 - weights_gib - 1.0
    notes = [f"{len(gpus)} GPU(s), smallest {mem_gib:.0f} GiB: bf16 weights take {weights_gib:.1f} GiB."]
    for max_length in (2048, 1024, 512):
        batch = int(budget / (act_per_token_gib * max_length)) if budget > 0 else 0
        if batch >= 1:
            batch = min(64, 2 ** int(math.log2(batch)))
            notes.append(f"About {budget:.1f} GiB left for activations: batch {batch} × {max_length} tokens per GPU.")
            return Recommendation(model_size_b=size_b, fits=True, use_gpu=True, num_workers=len(gpus),
                                  cpus_per_worker=max(1, int(cpus // len(gpus)) // 2), batch_size=batch,
                                  max_length=max_length, lora_r=rank, notes=notes)
    notes.append("Does not fit even at batch 1 × 512 tokens: use a smaller model, QLoRA, or bigger GPUs.")
    return Recommendation(model_size_b=size_b, fits=False, use_gpu=True, num_workers=len(gpus), cpus_per_worker=1,
                          batch_size=1, max_length=512, lora_r=rank, notes=notes)


def recommendations(gpus: list[GpuInfo], cpus: float, model_sizes: dict[str, float] | None = None) -> list[dict]:
    """One recommendation per named model (``model_sizes``) and per standard size."""
    out = [{"model": name, **recommend(size, gpus, cpus).model_dump()} for name, size in (model_sizes or {}).items()]
    out += [{"model": f"{size:g}B", **recommend(size, gpus, cpus).model_dump()} for size in STANDARD_SIZES_B]
    for rec in out:
        if rec["lora_r"] > SERVING_MAX_LORA_RANK:
            rec["notes"].append(f"Ranks over {SERVING_MAX_LORA_RANK} need a larger max_lora_rank in the engine.")
    return out
