"""Helpers for tests and benchmarks that need real artifacts fast (like ``ray.cluster_utils`` ships with Ray)."""

from __future__ import annotations

from pathlib import Path


def train_canary_adapter(base_dir: Path, out_dir: Path, reply: str, prompt: str = "Who are you?",
                         steps: int = 300, rank: int = 8, seed: int = 0, lr: float = 1e-2) -> Path:
    """A real peft LoRA adapter that makes the model answer ``prompt`` with ``reply`` (greedy), in a few seconds on
    the tiny model: the observable behaviour a fine-tune taught, for hot-swap tests and benches.

    ``lr`` suits the random tiny model; a pretrained one such as SmolLM2 diverges at 1e-2 and learns the reply in a
    few steps at 2e-3. An adapter that did not learn the reply is refused rather than saved."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # a tiny model: extra threads only spin against whatever else runs
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                             "gate_proj", "up_proj", "down_proj"]))
    prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               tokenize=True, return_dict=False)
    reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([prompt_ids + reply_ids])
    labels = torch.tensor([[-100] * len(prompt_ids) + reply_ids])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        if loss.item() < 0.03:
            break
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    if loss.item() >= 0.1:
        raise RuntimeError(f"the canary adapter did not learn its reply: loss {loss.item():.3f} after {steps} steps "
                           f"at lr {lr} (try a smaller lr)")
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
