"""The Pipelines tab's editing logic, form generation and graph picture, on the real operator palette."""

from __future__ import annotations

import pytest

from ui import pipeline_editor as edit
from ui import schema_form
from ui.pipeline_graph import layers, render_svg


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
    # Layout follows the edges: each node one column right of its input.
    assert layers(doc2) == {"text_input_1": 0, "text_template_1": 1, "print_sink_1": 2}
    assert doc2["nodes"][2]["position"]["x"] > doc2["nodes"][1]["position"]["x"] > doc2["nodes"][0]["position"]["x"]

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


def test_graph_picture_shows_nodes_edges_and_run_status(palette):
    doc, _ = edit.add_node(edit.new_pipeline(), palette["text_input"])
    doc, _ = edit.add_node(doc, palette["print_sink"])
    doc = edit.connect(doc, "text_input_1", "print_sink_1", None, palette)
    svg = render_svg(doc, palette, selected="print_sink_1",
                     results={"print_sink_1": {"status": "error", "duration_ms": 3.2}})
    assert svg.count('class="sage-node"') == 2 and svg.count('class="sage-edge"') == 1
    assert "error · 3 ms" in svg and "#dc2626" in svg
    # Labels are user text: markup in them is escaped, never injected.
    doc["nodes"][0]["label"] = "<script>x</script>"
    assert "<script>" not in render_svg(doc, palette)
    assert render_svg(edit.new_pipeline(), palette) == ""
