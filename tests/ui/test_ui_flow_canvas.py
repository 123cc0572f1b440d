"""The Pipelines tab's flow canvas in a real headless Chromium, driven with the mouse as a person would: operators
dragged from the palette, wires dragged port to port, nodes moved, the keyboard's Delete and Ctrl+Z, runs whose
results land on the nodes. Each test then checks what the API stored or answers, not only what the page shows.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import expect

from ui.render import preview

pytestmark = pytest.mark.browser

# A run through the CPU engine (or the docs' embedding for RAG) on a loaded 2-core machine.
REPLY_MS = 180_000


class Canvas:
    """Mouse gestures on the canvas of ``page``, in the coordinates a person sees."""

    def __init__(self, page):
        self.page = page
        self.nodes = page.locator("#pipeline-graph .sage-node")
        self.edges = page.locator("#pipeline-graph .sage-edge")
        self.toast = page.locator("#pl-canvas .sage-flow-toast")

    def idle(self) -> None:
        """Wait until every edit the canvas sent has been answered and drawn."""
        expect(self.page.locator("#pl-canvas .sage-flow")).to_have_attribute("data-pending", "0")

    def top(self) -> None:
        # Gestures use page coordinates: start from the top, where the palette and the canvas both show (clicking
        # a button lower down scrolls the page).
        self.page.evaluate("window.scrollTo(0, 0)")

    @staticmethod
    def center(locator) -> tuple[float, float]:
        box = locator.bounding_box()
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def node(self, node_id: str):
        return self.page.locator(f'#pipeline-graph .drawflow-node[data-node="{node_id}"]')

    def port(self, node_id: str, name: str):
        return self.node(node_id).locator(f'.input[data-port="{name}"]')

    def drop(self, operator: str, x: float, y: float) -> None:
        """Drag ``operator`` from the palette and drop it at (x, y) of the drawing area."""
        self.top()
        mouse = self.page.mouse
        mouse.move(*self.center(self.page.locator("#pl-palette .sage-chip", has_text=operator).first))
        mouse.down()
        area = self.page.locator("#pipeline-graph").bounding_box()
        mouse.move(area["x"] + x, area["y"] + y, steps=8)
        mouse.up()
        self.idle()

    def start_wire(self, source: str, toward) -> None:
        self.top()
        self.page.mouse.move(*self.center(self.node(source).locator(".output")))
        self.page.mouse.down()
        x, y = self.center(toward)
        self.page.mouse.move(x - 40, y, steps=6)

    def wire(self, source: str, target: str, port: str) -> None:
        """Drag from ``source``'s output onto ``target``'s input ``port``."""
        self.start_wire(source, self.port(target, port))
        self.page.mouse.move(*self.center(self.port(target, port)), steps=4)
        self.page.mouse.up()
        self.idle()

    def click(self, node_id: str) -> None:
        self.top()
        self.page.mouse.click(*self.center(self.node(node_id).locator(".sage-node-title")))
        self.idle()

    def click_wire(self, source: str, target: str, port: str) -> None:
        self.top()
        wire = self.page.locator(f'#pipeline-graph svg.sage-edge[data-wire="{source}>{target}.{port}"] path')
        box = wire.bounding_box()
        # A wire's curve is symmetric about its middle, which is the middle of its bounding box.
        self.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        self.idle()

    def move(self, node_id: str, dx: int, dy: int) -> None:
        self.top()
        x, y = self.center(self.node(node_id).locator(".sage-node-title"))
        self.page.mouse.move(x, y)
        self.page.mouse.down()
        self.page.mouse.move(x + dx, y + dy, steps=6)
        self.page.mouse.up()
        self.idle()

    def position(self, node_id: str) -> dict[str, float]:
        """Where the canvas draws the node, in canvas pixels (what the document stores)."""
        left, top = self.node(node_id).evaluate("e => [e.style.left, e.style.top]")
        return {"x": float(left.removesuffix("px")), "y": float(top.removesuffix("px"))}

    def expect_position(self, node_id: str, where: dict[str, float]) -> None:
        self.page.wait_for_function(
            "([id, x, y]) => { const e = document.querySelector(`#pipeline-graph [data-node=\"${id}\"].drawflow-node`);"
            " return e && parseFloat(e.style.left) === x && parseFloat(e.style.top) === y; }",
            arg=[node_id, where["x"], where["y"]])


def fill(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id}").locator("textarea, input").first.fill(value)


def pick(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id}").get_by_role("option", name=option, exact=True).click()


def open_canvas(studio_page, ui_studio) -> tuple[object, Canvas, list[str]]:
    """The Pipelines tab on a new page, and the list of every URL the page asks for from then on."""
    page = studio_page.open(ui_studio.ui_url).page
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    studio_page.tab("Pipelines")
    expect(page.locator("#pl-palette .sage-chip").first).to_be_visible()
    return page, Canvas(page), requested


def test_drag_wire_move_save_and_run_on_the_canvas(studio_page, ui_studio):
    page, canvas, requested = open_canvas(studio_page, ui_studio)
    expect(page.locator("#pl-canvas .sage-flow-empty")).to_be_visible()
    # (x, y): where the pointer lets go, which becomes the node's title bar; the area is about 700 × 570 here.
    for operator, x, y in [("Text input", 140, 80), ("Promptor", 140, 270), ("Generator", 420, 80), ("Print", 420, 280)]:
        canvas.drop(operator, x, y)
    expect(canvas.nodes).to_have_count(4)
    expect(page.locator("#pl-canvas .sage-flow-empty")).to_be_hidden()
    canvas.wire("text_input_1", "promptor_1", "question")
    canvas.wire("promptor_1", "generator_1", "prompt")
    canvas.wire("generator_1", "print_sink_1", "value")
    expect(canvas.edges).to_have_count(3)
    expect(canvas.toast).to_be_hidden()

    # A node's config form is the one its operator's schema makes. The test model (random weights) answers
    # nothing but newlines unless it samples hot, so the generator does: a visible, if meaningless, answer.
    canvas.click("generator_1")
    expect(page.locator("#pl-form")).to_contain_text("generator_1")
    page.locator("#pl-form").get_by_label("Temperature").fill("2")
    page.locator("#pl-form").get_by_label("Max tokens").fill("24")
    page.locator("#pl-apply").click()
    expect(page.locator("#pl-status")).to_contain_text("Settings of generator_1 updated.")
    canvas.idle()

    before = canvas.position("print_sink_1")
    canvas.move("print_sink_1", 150, 90)
    moved = canvas.position("print_sink_1")
    assert moved == {"x": before["x"] + 150, "y": before["y"] + 90}
    # The move is an edit like any other: undone and redone from the toolbar.
    page.locator("#pl-undo").click()
    canvas.expect_position("print_sink_1", before)
    page.locator("#pl-redo").click()
    canvas.expect_position("print_sink_1", moved)
    canvas.idle()

    page.locator("#pl-save").click()
    expect(page.locator("#pl-status")).to_contain_text("Saved as pl_")
    pipeline_id = re.search(r"Saved as (pl_\w+)", page.locator("#pl-status").text_content()).group(1)
    stored = httpx.get(f"{ui_studio.gateway_url}/api/pipelines/{pipeline_id}", timeout=60).json()
    assert sorted(n["id"] for n in stored["nodes"]) == ["generator_1", "print_sink_1", "promptor_1", "text_input_1"]
    assert sorted((c["source"], c["target"], c["target_port"]) for c in stored["connections"]) == [
        ("generator_1", "print_sink_1", "value"), ("promptor_1", "generator_1", "prompt"),
        ("text_input_1", "promptor_1", "question")]
    by_id = {n["id"]: n for n in stored["nodes"]}
    assert by_id["print_sink_1"]["position"] == moved
    assert by_id["generator_1"]["config"] == {"temperature": 2.0, "max_tokens": 24}

    fill(page, "pl-input", "Tell me about Ray Serve")
    page.locator("#pl-run").click()
    expect(page.locator("#pl-run-status")).to_contain_text("Ran in", timeout=REPLY_MS)
    # The sink node shows the answer: the generator's output, as the run's results (from the API) hold it.
    results = page.locator("#pl-results")
    expect(results).to_contain_text("print_sink_1")
    canvas.click("generator_1")
    answer = page.locator("#pl-node-output .sage-node-output-body").text_content()
    assert re.search(r"\S", answer), repr(answer)
    sink = canvas.node("print_sink_1")
    expect(sink).to_have_class(re.compile(r"\bsage-run-ok\b"))
    expect(sink.locator(".sage-node-badge")).to_contain_text("ok ·")
    expect(sink.locator(".sage-node-preview")).to_have_text(preview(answer, 140))
    canvas.click("print_sink_1")
    expect(page.locator("#pl-node-output")).to_contain_text("print_sink_1 · ok")
    expect(page.locator("#pl-node-output .sage-node-output-body")).to_have_text(answer)
    studio_page.screenshot("pipelines-canvas-run", full_page=False)

    # Opened again from the saved list, the pipeline comes back where it was drawn.
    page.locator("#pl-new").click()
    expect(canvas.nodes).to_have_count(0)
    pick(page, "pl-saved", f"Untitled pipeline ({pipeline_id})")
    page.locator("#pl-open").click()
    expect(canvas.nodes).to_have_count(4)
    expect(canvas.edges).to_have_count(3)
    canvas.expect_position("print_sink_1", moved)

    studio_host = urlparse(ui_studio.ui_url).hostname
    assert {urlparse(u).hostname for u in requested if u.startswith("http")} == {studio_host}  # offline: no CDN
    assert studio_page.console_errors == []


def test_the_canvas_refuses_a_wrong_wire_and_points_at_problems(studio_page, ui_studio):
    page, canvas, _ = open_canvas(studio_page, ui_studio)
    canvas.drop("Text input", 140, 80)
    canvas.drop("Generator", 440, 80)
    # While the wire is dragged, the input that would refuse it fades and the one that takes it glows.
    canvas.start_wire("text_input_1", canvas.port("generator_1", "prompt"))
    expect(canvas.port("generator_1", "prompt")).to_have_class(re.compile(r"\bsage-cannot\b"))
    expect(canvas.port("generator_1", "session")).to_have_class(re.compile(r"\bsage-can\b"))
    page.mouse.move(*canvas.center(canvas.port("generator_1", "prompt")), steps=4)
    page.mouse.up()
    refusal = "Refused: text_input_1 produces text, but input 'prompt' of generator_1 expects messages."
    expect(canvas.toast).to_have_text(refusal)
    expect(canvas.port("generator_1", "prompt")).to_have_class(re.compile(r"\bsage-refused\b"))
    expect(canvas.edges).to_have_count(0)
    # The keyboard's way to connect refuses it with the same sentence (the editor's own check).
    page.locator("#pl-keyboard").click()
    pick(page, "pl-from", "text_input_1")
    pick(page, "pl-to", "generator_1")
    pick(page, "pl-port", "prompt")
    page.locator("#pl-connect").click()
    expect(page.locator("#pl-status")).to_contain_text(refusal)
    canvas.idle()
    expect(canvas.edges).to_have_count(0)

    canvas.wire("text_input_1", "generator_1", "session")  # text into a text input: taken
    expect(canvas.edges).to_have_count(1)
    # Saving asks the builder, which finds the generator's prompt unconnected: the node says so on the canvas.
    page.locator("#pl-save").click()
    expect(page.locator("#pl-status")).to_contain_text("not connected")
    generator = canvas.node("generator_1")
    expect(generator).to_have_class(re.compile(r"\bsage-invalid\b"))
    expect(generator.locator(".sage-node-issue")).to_contain_text("Input 'prompt' of node 'generator_1'")
    expect(page.locator("#pl-node-output")).to_contain_text("Input 'prompt' of node 'generator_1'")

    # Delete removes the selected wire, then the selected node; Ctrl+Z brings the node back.
    canvas.click_wire("text_input_1", "generator_1", "session")
    page.keyboard.press("Delete")
    canvas.idle()
    expect(canvas.edges).to_have_count(0)
    canvas.click("text_input_1")
    page.keyboard.press("Delete")
    canvas.idle()
    expect(canvas.nodes).to_have_count(1)
    page.keyboard.press("Control+z")
    canvas.idle()
    expect(canvas.nodes).to_have_count(2)
    # Auto-layout: unconnected, both nodes are sources, so they stack in the first column.
    page.locator("#pl-layout").click()
    canvas.idle()
    canvas.expect_position("text_input_1", {"x": 40, "y": 40})
    canvas.expect_position("generator_1", {"x": 40, "y": 190})
    assert studio_page.console_errors == []


def test_the_rag_template_on_a_laptop_screen_before_and_after_a_run(laptop_page, ui_studio):
    # What tests/artifacts/pipelines-canvas-rag*.png show: look at them after a change to the canvas.
    page, canvas, _ = open_canvas(laptop_page, ui_studio)
    pick(page, "pl-template", "RAG Q&A over the studio docs")
    page.locator("#pl-use-template").click()
    expect(canvas.nodes).to_have_count(8)
    expect(canvas.edges).to_have_count(8)
    canvas.idle()
    page.evaluate("window.scrollTo(0, 0)")
    # The whole graph fits in the drawing area, and the tab needs no sideways scrolling at 1280×800.
    area = page.locator("#pipeline-graph").bounding_box()
    for i in range(8):
        box = canvas.nodes.nth(i).bounding_box()
        assert area["x"] <= box["x"] and box["x"] + box["width"] <= area["x"] + area["width"], box
        assert area["y"] <= box["y"] and box["y"] + box["height"] <= area["y"] + area["height"], box
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert area["y"] + area["height"] <= 800  # the canvas is on the first screen
    laptop_page.screenshot("pipelines-canvas-rag", full_page=False)

    # The test model reads 512 tokens and answers only newlines unless it samples hot: a shorter context for the
    # promptor and a hot generator, set in their forms, so the run goes through and the answer shows.
    form = page.locator("#pl-form")
    for node_id, field, value in [("promptor", "Max context chars", "300"), ("generator", "Temperature", "2")]:
        canvas.click(node_id)
        expect(form).to_contain_text(node_id)
        form.get_by_label(field).fill(value)
        page.locator("#pl-apply").click()
        expect(page.locator("#pl-status")).to_contain_text(f"Settings of {node_id} updated.")
        canvas.idle()
    fill(page, "pl-input", json.dumps({"question": "What does the studio run fine-tunes on?"}))
    page.locator("#pl-run").click()
    expect(page.locator("#pl-run-status")).to_contain_text("Ran in", timeout=REPLY_MS)
    expect(page.locator("#pipeline-graph .sage-node.sage-run-ok")).to_have_count(8)
    canvas.click("answer")
    expect(page.locator("#pl-node-output")).to_contain_text("answer · ok")
    page.evaluate("window.scrollTo(0, 0)")
    laptop_page.screenshot("pipelines-canvas-rag-run", full_page=False)
    assert laptop_page.console_errors == []
