"""The Pipelines tab's editing logic, form generation, auto-layout and the flow canvas's view and edits, on the
real operator palette."""

from __future__ import annotations

import json

import pytest

from ui import flow_canvas, schema_form
from ui import pipeline_editor as edit
from ui.pipeline_graph import layers


@pytest.fixture(scope="module")
def palette() -> dict[str, dict]:
    # The registry's own palette: the same JSON GET /api/operators answers.
    from pipelines.registry import default_registry

    return {op["type"]: op for op in default_registry().palette()}


def test_build_a_graph_then_undo_and_redo(palette):
    doc, hist = edit.new_pipeline(), edit.empty_history()
    steps = []
    for type_name in ("text_input", "text_template", "print_sink"):
        before = doc
        doc, node_id = edit.add_node(doc, palette[type_name])
        hist = edit.record(hist, before)
        steps.append(node_id)
    assert steps == ["text_input_1", "text_template_1", "print_sink_1"]
    before = doc
    doc = edit.connect(doc, "text_input_1", "text_template_1", None, palette)
    hist = edit.record(hist, before)
    doc2 = edit.connect(doc, "text_template_1", "print_sink_1", "value", palette)
    hist = edit.record(hist, doc)
    assert [(c["source"], c["target"], c["target_port"]) for c in doc2["connections"]] == [
        ("text_input_1", "text_template_1", "text"), ("text_template_1", "print_sink_1", "value")]
    # Positions are the user's: connecting moves nothing; auto-layout puts each node a column right of its input.
    assert [n["position"] for n in doc2["nodes"]] == [n["position"] for n in doc["nodes"]]
    assert layers(doc2) == {"text_input_1": 0, "text_template_1": 1, "print_sink_1": 2}
    laid = edit.auto_layout(doc2)
    assert laid["nodes"][2]["position"]["x"] > laid["nodes"][1]["position"]["x"] > laid["nodes"][0]["position"]["x"]

    undone, hist = edit.undo(hist, doc2)
    assert len(undone["connections"]) == 1
    redone, hist = edit.redo(hist, undone)
    assert redone == doc2
    with pytest.raises(edit.EditError, match="Nothing to redo"):
        edit.redo(hist, redone)
    # A new edit after an undo drops the redo branch.
    undone, hist = edit.undo(hist, redone)
    hist = edit.record(hist, undone)
    assert hist["future"] == []


def test_bad_edits_say_why(palette):
    doc, _ = edit.add_node(edit.new_pipeline(), palette["text_input"])
    doc, _ = edit.add_node(doc, palette["retriever"])
    with pytest.raises(edit.EditError, match="Pick which input of 'retriever_1'"):
        edit.connect(doc, "text_input_1", "retriever_1", None, palette)
    with pytest.raises(edit.EditError, match="has no input 'nope'"):
        edit.connect(doc, "text_input_1", "retriever_1", "nope", palette)
    with pytest.raises(edit.EditError, match="takes no input"):
        edit.connect(doc, "retriever_1", "text_input_1", None, palette)
    with pytest.raises(edit.EditError, match="cannot feed itself"):
        edit.connect(doc, "retriever_1", "retriever_1", "query", palette)
    doc = edit.connect(doc, "text_input_1", "retriever_1", "query", palette)
    with pytest.raises(edit.EditError, match="already connected"):
        edit.connect(doc, "text_input_1", "retriever_1", "query", palette)
    with pytest.raises(edit.EditError, match="no node 'ghost'"):
        edit.remove_node(doc, "ghost")
    removed = edit.remove_node(doc, "text_input_1")
    assert removed["connections"] == [] and [n["id"] for n in removed["nodes"]] == ["retriever_1"]


def test_forms_follow_the_operator_schemas(palette):
    specs = {s.name: s for s in schema_form.fields(palette["retriever"]["config_schema"])}
    assert specs["method"].kind == "choice" and specs["method"].choices == ["dense", "bm25"]
    assert specs["top_k"].kind == "integer" and specs["top_k"].minimum == 1
    assert specs["min_score"].kind == "number" and specs["min_score"].nullable
    template = {s.name: s for s in schema_form.fields(palette["text_template"]["config_schema"])}
    assert template["template"].required and template["template"].kind == "textarea"

    ordered = list(specs.values())
    values = {"top_k": 5, "method": "bm25", "min_score": None}
    config, problems = schema_form.to_config(ordered, [values[s.name] for s in ordered])
    assert problems == [] and config == {"top_k": 5, "method": "bm25"}
    _, problems = schema_form.to_config(ordered, [0 if s.name == "top_k" else values[s.name] for s in ordered])
    assert problems == ["“Top K” must be at least 1."]
    _, problems = schema_form.to_config(list(template.values()), ["  "])
    assert problems == ["“Template” is required."]


def test_nodes_stay_where_they_are_put(palette):
    doc, first = edit.add_node(edit.new_pipeline(), palette["text_input"], {"x": 300, "y": 120})
    doc, second = edit.add_node(doc, palette["print_sink"])  # no drop point: a free grid spot
    assert doc["nodes"][0]["position"] == {"x": 300.0, "y": 120.0}
    assert doc["nodes"][1]["position"] == {"x": 40, "y": 40}
    moved = edit.move_node(doc, second, 500, 80)
    assert moved["nodes"][1]["position"] == {"x": 500.0, "y": 80.0}
    assert doc["nodes"][1]["position"] == {"x": 40, "y": 40}  # edits make new documents
    wired = edit.connect(moved, first, second, None, palette)
    assert [n["position"] for n in edit.remove_node(wired, first)["nodes"]] == [{"x": 500.0, "y": 80.0}]
    assert edit.disconnect_ports(wired, first, second, "value", palette)["connections"] == []
    with pytest.raises(edit.EditError, match="no longer exists"):
        edit.disconnect_ports(wired, second, first, "value", palette)


def test_wires_between_types_the_builder_refuses_are_refused(palette):
    doc, _ = edit.add_node(edit.new_pipeline(), palette["text_input"])
    doc, _ = edit.add_node(doc, palette["generator"])
    with pytest.raises(edit.EditError) as refused:
        edit.connect(doc, "text_input_1", "generator_1", "prompt", palette)
    assert str(refused.value) == ("Refused: text_input_1 produces text, but input 'prompt' of generator_1 expects "
                                  "messages.")
    # text → the generator's text input is fine, and the builder agrees with both answers.
    ok = edit.connect(doc, "text_input_1", "generator_1", "session", palette)
    from pipelines.builder import PipelineBuilder
    from pipelines.models import VisualPipeline

    bad = {**doc, "connections": [{"source": "text_input_1", "target": "generator_1", "target_port": "prompt"}]}
    codes = [i.code for i in PipelineBuilder().validate(VisualPipeline.model_validate(bad))]
    assert "incompatible_ports" in codes
    assert "incompatible_ports" not in [i.code for i in PipelineBuilder().validate(VisualPipeline.model_validate(ok))]


def test_the_canvas_view_carries_ports_wires_runs_and_problems(palette):
    doc, _ = edit.add_node(edit.new_pipeline(), palette["text_input"], {"x": 10, "y": 20})
    doc, _ = edit.add_node(doc, palette["print_sink"], {"x": 300, "y": 20})
    doc = edit.connect(doc, "text_input_1", "print_sink_1", None, palette)
    doc["nodes"][0]["label"] = "<script>x</script>"  # user text travels as data; the canvas sets it as text
    wire_label = "text_input_1.output → print_sink_1.value"  # the builder's Connection.label
    issues = [{"code": "x", "message": "Bad wire.", "node": None, "connection": wire_label},
              {"code": "y", "message": "Bad node.", "node": "print_sink_1", "connection": None},
              {"code": "z", "message": "Cycle.", "node": None, "connection": None}]
    runs = {"print_sink_1": {"status": "error", "duration_ms": 3.2, "error": "boom"}}
    view = json.loads(flow_canvas.canvas_view(doc, palette, "print_sink_1", runs, issues, fit=True))
    first, sink = view["nodes"]
    assert (first["label"], first["x"], first["y"], first["output"], first["inputs"]) == (
        "<script>x</script>", 10.0, 20.0, "text", [])
    assert sink["inputs"] == [{"name": "value", "type": "any", "required": True, "multiple": False,
                               "accepts": ["text", "documents", "messages", "metric", "any"]}]
    assert view["wires"] == [{"source": "text_input_1", "target": "print_sink_1", "port": "value"}]
    assert view["runs"] == {"print_sink_1": {"status": "error", "ms": 3, "preview": "boom"}}
    assert view["issues"] == {"nodes": {"print_sink_1": ["Bad node."]}, "other": ["Cycle."],
                              "wires": [{"source": "text_input_1", "target": "print_sink_1", "port": "value",
                                         "message": "Bad wire."}]}
    assert view["selected"] == "print_sink_1" and view["fit"] is True
    assert "{produced}" in view["text"]["incompatible"]
    # Each view is new to the browser, even for the same document (a refused edit must redraw the canvas).
    assert json.loads(flow_canvas.canvas_view(doc, palette))["rev"] != view["rev"]


def test_canvas_edits_go_through_the_editor(palette):
    drop = {"op": "add", "type": "text_input", "x": 12.4, "y": 7}
    doc, node = flow_canvas.apply_edit(edit.new_pipeline(), palette, drop)
    assert node == "text_input_1" and doc["nodes"][0]["position"] == {"x": 12.4, "y": 7.0}
    doc, _ = flow_canvas.apply_edit(doc, palette, {"op": "add", "type": "promptor", "x": 300, "y": 0})
    doc, node = flow_canvas.apply_edit(doc, palette, {"op": "move", "id": "promptor_1", "x": 320, "y": 1e9})
    assert node == "promptor_1" and doc["nodes"][1]["position"] == {"x": 320.0, "y": 100000.0}
    wire = {"source": "text_input_1", "target": "promptor_1", "port": "question"}
    doc, node = flow_canvas.apply_edit(doc, palette, {"op": "connect", **wire})
    assert node == "promptor_1" and doc["connections"][0]["target_port"] == "question"
    with pytest.raises(edit.EditError, match="expects documents"):
        flow_canvas.apply_edit(doc, palette, {"op": "connect", **wire, "port": "context"})
    laid, _ = flow_canvas.apply_edit(doc, palette, {"op": "layout"})
    assert laid["nodes"][1]["position"]["x"] > laid["nodes"][0]["position"]["x"]
    unwired, _ = flow_canvas.apply_edit(doc, palette, {"op": "disconnect", **wire})
    assert unwired["connections"] == []
    removed, _ = flow_canvas.apply_edit(doc, palette, {"op": "remove", "id": "text_input_1"})
    assert [n["id"] for n in removed["nodes"]] == ["promptor_1"] and removed["connections"] == []
    # What a browser sends is checked like any input.
    for bad in (None, [], {"op": "drop tables"}, {"op": "add", "type": "nope", "x": 0, "y": 0},
                {"op": "move", "id": "promptor_1", "x": "left", "y": 0}, {"op": "move", "id": 3, "x": 0, "y": 0},
                {"op": "add", "type": "text_input", "x": float("nan"), "y": 0}, {"op": "connect", "source": "a"}):
        with pytest.raises(edit.EditError):
            flow_canvas.apply_edit(doc, palette, bad)


def test_the_canvas_ships_with_the_studio(palette):
    # Drawflow and the canvas script are inlined into the page: nothing is fetched from a CDN, so it works offline.
    sources = [(flow_canvas.DRAWFLOW / "drawflow.min.js").read_text(),
               (flow_canvas.ASSETS / "flow_canvas.js").read_text()]
    assert flow_canvas.head() == "".join(f"<script>{source}</script>" for source in sources)
    assert not any("</script" in source.lower() for source in sources)  # inlined as they are: none may end early
    assert "Drawflow" in sources[0] and "window.SageFlow" in sources[1]
    assert all(path.is_file() for path in flow_canvas.CSS_PATHS)
    assert (flow_canvas.DRAWFLOW / "LICENSE").read_text().startswith("MIT License")
    listed = json.loads(flow_canvas.palette_view(list(palette.values())))
    assert {"type": "generator", "label": "Generator", "category": "llm",
            "description": palette["generator"]["description"]} in listed
