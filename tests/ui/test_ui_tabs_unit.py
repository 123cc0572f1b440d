"""The tabs without Ray or a browser: the UI stays an HTTP client (no Ray, vLLM or deployment code in its process),
each tab's controller turns an unreachable studio into the sentence the tab shows, and the Pipelines controller's
edits and config form work on the real operator palette."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import gradio as gr
import pytest

from ui import pipeline_editor as edit
from ui import schema_form
from ui.app import build_blocks
from ui.client import StudioClient
from ui.tabs.chat import ChatController
from ui.tabs.finetune import LOAD_OUTPUTS as FT_LOAD_OUTPUTS
from ui.tabs.finetune import FinetuneController, task_config
from ui.tabs.memory import MemoryController
from ui.tabs.models import ModelsController
from ui.tabs.pipelines import LOAD_OUTPUTS as PL_LOAD_OUTPUTS
from ui.tabs.pipelines import VIEW_OUTPUTS, PipelinesController
from ui.tabs.system import SystemController


def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def palette() -> dict[str, dict]:
    from pipelines.registry import default_registry

    return {op["type"]: op for op in default_registry().palette()}


def test_the_ui_process_imports_no_ray_vllm_or_deployments():
    code = ("import sys, ui.app, ui.share; from ui.app import build_blocks; from ui.client import StudioClient; "
            "build_blocks(StudioClient('http://127.0.0.1:9')); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'vllm', 'deployments', 'train'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_blocks_carry_the_tabs_and_the_dashboard_link():
    blocks = build_blocks(StudioClient("http://127.0.0.1:9"), dashboard_url="http://127.0.0.1:8265")
    by_id = {b.elem_id: b for b in blocks.blocks.values() if getattr(b, "elem_id", None)}
    assert [by_id[f"tab-{t}"].label for t in ("chat", "pipelines", "finetune", "models", "memory", "system")] == [
        "Chat", "Pipelines", "Fine-tune", "Models", "Memory", "System"]
    assert by_id["chat-model"].value == "sage-default"
    assert by_id["ft-model"].value == "SmolLM2-135M-Instruct"
    assert by_id["pl-name"].value == "Untitled pipeline"
    assert 'href="http://127.0.0.1:8265"' in by_id["system-dashboard"].value


def test_an_unreachable_studio_is_a_sentence_in_every_tab():
    url = closed_url()
    client = StudioClient(url, timeout=5)
    why = f"Cannot reach the studio API at {url} (ConnectError). Is the studio running?"

    async def scenario():
        replies = [update async for update in ChatController(client).send("hello", None, "sage-default", [])]
        return {
            "chat": await ChatController(client).load(None),
            "chat reply": replies[-1],
            "finetune": dict(zip(FT_LOAD_OUTPUTS, await FinetuneController(client).load("m", None), strict=True)),
            "pipelines": dict(zip(PL_LOAD_OUTPUTS, await PipelinesController(client).load(), strict=True)),
            "models": await ModelsController(client).load(),
            "memory": await MemoryController(client).load(),
            "system": await SystemController(client).load(),
        }

    seen = asyncio.run(scenario())
    assert f"Conversations: {why}" in seen["chat"][2]
    history = seen["chat reply"][0]
    assert history[0] == {"role": "user", "content": "hello"}
    assert history[1] == {"role": "assistant", "content": f"⚠️ **No reply:** {why}"}
    assert f"Chat: {why}" in seen["chat reply"][3]
    assert f"Datasets: {why}" in seen["finetune"]["status"]
    assert seen["finetune"]["dataset"] == gr.update()  # nothing else in the tab is touched
    assert f"Pipelines: {why}" in seen["pipelines"]["status"]
    assert f"Models: {why}" in seen["models"][2]
    assert f"Memory: {why}" in seen["memory"][1]
    assert f"Cluster resources: {why}" in seen["system"][1] and f"Gateway: {why}" in seen["system"][5]


def test_pipeline_edits_through_the_controller(palette):
    pl = PipelinesController(StudioClient("http://127.0.0.1:9"))

    def view(outputs):
        return dict(zip(VIEW_OUTPUTS, outputs, strict=True))

    v = view(pl.add(edit.new_pipeline(), edit.empty_history(), palette, "text_input"))
    v = view(pl.add(v["pipeline"], v["history"], palette, "print_sink"))
    v = view(pl.connect(v["pipeline"], v["history"], palette, "text_input_1", "print_sink_1", None))
    canvas = json.loads(v["canvas"])
    assert [n["id"] for n in canvas["nodes"]] == ["text_input_1", "print_sink_1"]
    assert canvas["wires"] == [{"source": "text_input_1", "target": "print_sink_1", "port": "value"}]
    assert v["conns"]["choices"] == [("text_input_1 → print_sink_1.value", 0)]
    assert v["node"]["value"] == "print_sink_1"

    refused = view(pl.connect(v["pipeline"], v["history"], palette, "print_sink_1", "print_sink_1", "value"))
    assert "A node cannot feed itself." in refused["status"] and refused["pipeline"] == v["pipeline"]
    undone = view(pl.undo(v["pipeline"], v["history"], palette))
    assert undone["pipeline"]["connections"] == [] and len(undone["pipeline"]["nodes"]) == 2
    emptied = view(pl.undo(edit.new_pipeline(), edit.empty_history(), palette))
    assert "Nothing to undo." in emptied["status"]


def test_canvas_events_edit_select_and_undo_through_the_controller(palette):
    pl = PipelinesController(StudioClient("http://127.0.0.1:9"))

    def on_canvas(v, edit_request, runs=None):
        evt = gr.EventData(None, {"edit": edit_request})
        return dict(zip(VIEW_OUTPUTS, pl.canvas_edit(v["pipeline"], v["history"], palette, runs or v["results"],
                                                     v["issues"], evt), strict=True))

    start = {"pipeline": edit.new_pipeline(), "history": edit.empty_history(), "results": {}, "issues": []}
    v = on_canvas(start, {"op": "add", "type": "text_input", "x": 40, "y": 60})
    v = on_canvas(v, {"op": "add", "type": "print_sink", "x": 300, "y": 60})
    v = on_canvas(v, {"op": "connect", "source": "text_input_1", "target": "print_sink_1", "port": "value"})
    assert len(v["pipeline"]["connections"]) == 1 and len(v["history"]["past"]) == 3
    runs = {"print_sink_1": {"status": "ok", "duration_ms": 2, "output": "hi"}}
    # Selecting and moving keep the last run on the canvas; only moving can be undone.
    picked = on_canvas(v, {"op": "select", "id": "text_input_1"}, runs)
    assert picked["node"]["value"] == "text_input_1" and picked["history"] == v["history"]
    assert json.loads(picked["canvas"])["runs"]["print_sink_1"]["preview"] == "hi"
    moved = on_canvas(picked, {"op": "move", "id": "print_sink_1", "x": 420, "y": 90}, runs)
    assert moved["pipeline"]["nodes"][1]["position"] == {"x": 420.0, "y": 90.0} and moved["results"] == runs
    assert "print_sink_1 · ok · 2 ms" in moved["node_output"]
    undone = on_canvas(moved, {"op": "undo"})
    assert undone["pipeline"]["nodes"][1]["position"] == {"x": 300.0, "y": 60.0}
    assert on_canvas(undone, {"op": "redo"})["pipeline"] == moved["pipeline"]
    # A refused edit leaves the document as it was and says why; so does nonsense from the browser.
    refused = on_canvas(v, {"op": "connect", "source": "print_sink_1", "target": "print_sink_1", "port": "value"})
    assert refused["pipeline"] == v["pipeline"] and "A node cannot feed itself." in refused["status"]
    assert "does not understand" in on_canvas(v, {"op": "teleport"})["status"]
    # After a deletion nothing is selected, so a second Delete on the canvas removes nothing more.
    removed = on_canvas(v, {"op": "remove", "id": "print_sink_1"})
    assert removed["node"]["value"] is None and json.loads(removed["canvas"])["selected"] is None
    laid = on_canvas(v, {"op": "layout"})
    assert json.loads(laid["canvas"])["fit"] is True and laid["history"]["past"][-1] == v["pipeline"]


def test_the_config_form_is_built_from_the_schema_and_checks_values(palette):
    pl = PipelinesController(StudioClient("http://127.0.0.1:9"))
    doc, node_id = edit.add_node(edit.new_pipeline(), palette["text_template"])
    with gr.Blocks() as blocks:
        pl.config_form([gr.State() for _ in range(3)], [gr.State() for _ in VIEW_OUTPUTS], doc, node_id, palette)
    labels = [getattr(b, "label", None) for b in blocks.blocks.values()]
    assert "Template *" in labels and "Label" in labels
    # Every field can be edited, also those that start with a value (gr.render would show those read-only).
    fields = [b for b in blocks.blocks.values() if isinstance(b, (gr.Textbox, gr.Number, gr.Dropdown, gr.Checkbox))]
    assert fields and all(b.interactive for b in fields)

    specs = schema_form.fields(palette["text_template"]["config_schema"])
    hist = edit.empty_history()
    refused = dict(zip(VIEW_OUTPUTS, pl.apply_config(node_id, specs, doc, hist, palette, "", "  "), strict=True))
    assert "“Template” is required." in refused["status"] and refused["pipeline"] == doc
    applied = dict(zip(VIEW_OUTPUTS, pl.apply_config(node_id, specs, doc, hist, palette, "Ask", "Q: $text"),
                       strict=True))
    assert f"Settings of {node_id} updated." in applied["status"]
    node = applied["pipeline"]["nodes"][0]
    assert node["config"] == {"template": "Q: $text"} and node["label"] == "Ask"
    assert applied["history"]["past"] == [doc]


def test_the_finetune_form_becomes_the_create_request():
    assert task_config("ds1", "SmolLM2-135M-Instruct", "  codeword ", 2, 4, 8, 0.01, 64, 4, 8, 0.1, 2) == {
        "dataset_id": "ds1", "model": "SmolLM2-135M-Instruct", "epochs": 2, "batch_size": 8, "learning_rate": 0.01,
        "max_length": 64, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "num_workers": 2, "max_steps": 4,
        "name": "codeword"}
    # Emptied number boxes fall back to the defaults; 0 steps means all epochs, a blank name none.
    assert task_config("ds1", "m", " ", None, 0, None, None, None, None, None, None, None) == {
        "dataset_id": "ds1", "model": "m", "epochs": 1, "batch_size": 1, "learning_rate": 2e-4, "max_length": 512,
        "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "num_workers": 1}
    recs = [{"model": "a", "batch_size": 2, "max_length": 128, "lora_r": 4, "num_workers": 1},
            {"model": "b", "batch_size": 8, "max_length": 256, "lora_r": 16, "num_workers": 2}]
    assert FinetuneController.apply_recommendation(recs, "b") == (8, 256, 16, 2)
    assert FinetuneController.apply_recommendation([], "b") == [gr.update()] * 4


def test_a_handler_wired_to_several_events_keeps_one_concurrency_group():
    # Gradio groups events by id(fn) and runs a group one at a time: the Fine-tune tab's four refreshes (timer, task
    # pick, after submit, after cancel) must not overlap, so ``follow`` has to be one object on all of them.
    blocks = build_blocks(StudioClient("http://127.0.0.1:9"))
    groups: dict[object, set[str]] = {}
    for block_fn in blocks.fns.values():
        if block_fn.fn is not None:
            groups.setdefault(getattr(block_fn.fn, "__func__", block_fn.fn), set()).add(block_fn.concurrency_id)
    assert {handler: ids for handler, ids in groups.items() if len(ids) > 1} == {}
    follows = [f for f in blocks.fns.values() if getattr(f.fn, "__func__", None) is FinetuneController.follow]
    assert len(follows) == 4


def test_the_loss_plot_draws_the_training_and_held_out_curves():
    from ui.tabs.finetune_view import loss_frame, task_notice

    points = [{"step": 1, "loss": 6.1, "eval_loss": None}, {"step": 2, "loss": 5.9, "eval_loss": 6.0},
              {"step": 3, "loss": 5.5, "eval_loss": 5.7, "base_eval_loss": 6.3}]
    frame = loss_frame(points).sort_values(["curve", "step"])
    curves = {c: list(zip(g["step"], g["loss"])) for c, g in frame.groupby("curve")}
    assert curves == {"train": [(1, 6.1), (2, 5.9), (3, 5.5)], "held-out": [(0, 6.3), (2, 6.0), (3, 5.7)]}
    assert list(loss_frame([]).dtypes.astype(str)[:2]) == ["int64", "float64"]
    done = {"id": "ft-1", "name": "toy", "state": "completed", "evaluation": {
        "rows": 13, "base": {"loss": 6.2, "perplexity": 492.7}, "fine_tuned": {"loss": 1.3, "perplexity": 3.67}}}
    assert "held-out loss on 13 rows: base 6.2 (perplexity 492.7) → fine-tuned 1.3" in task_notice(done)
