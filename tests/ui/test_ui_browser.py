"""The studio UI in a real headless Chromium, against the real studio on Ray Serve (gateway, vLLM engine on the
tiny model, Ray Train fine-tunes). Each test checks what a person sees, then what the API stored.

The tests run in file order: the fine-tune switches the chat model, the screenshots come after everything else
has filled the tabs, and the engine is stopped last.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TABS = ["Chat", "Pipelines", "Fine-tune", "Models", "Memory", "System"]
# A reply of the CPU engine, or a pipeline run, on a loaded 2-core machine (seconds when it is idle).
REPLY_MS = 120_000
# Records the length of the last assistant bubble on every DOM change, to see the reply grow while it streams.
WATCH_STREAM = """() => {
  window.__replyLengths = [];
  const root = document.querySelector('#chat-bot');
  new MutationObserver(() => {
    const bots = root.querySelectorAll('[data-testid="bot"]');
    window.__replyLengths.push(bots.length ? bots[bots.length - 1].textContent.length : 0);
  }).observe(root, {subtree: true, childList: true, characterData: true});
}"""


def pick(page, elem_id: str, option: str) -> None:
    """Choose ``option`` in the Gradio dropdown ``elem_id``."""
    page.locator(f"#{elem_id} input").click()
    # The option list lives inside the dropdown's block; another dropdown's list may still be in the page.
    page.locator(f"#{elem_id}").get_by_role("option", name=option, exact=True).click()


def fill(page, elem_id: str, value: str) -> None:
    page.locator(f"#{elem_id}").locator("textarea, input").first.fill(value)


def send(page, text: str) -> None:
    fill(page, "chat-input", text)
    page.locator("#chat-send").click()


def selected_session(page) -> str:
    return page.locator("#chat-sessions label.selected input").get_attribute("value")


def shown_words(reply: str, bubble: str) -> tuple[list[str], list[str]]:
    """The words of ``reply`` and those of them the chat bubble shows (Markdown may hide a link's target or the
    like, so a few may be missing)."""
    words = re.findall(r"[A-Za-z]{4,}", reply)
    return words, [w for w in words if w in bubble]


def test_chat_session_streams_renames_and_deletes(studio_page, ui_studio):
    page = studio_page.open(ui_studio.ui_url).page
    page.locator("#chat-new").click()
    expect(page.locator("#chat-sessions label.selected")).to_have_text("New chat")
    session_id = selected_session(page)

    page.evaluate(WATCH_STREAM)
    send(page, "Tell me about Ray Serve")
    # The reply ends when the status names the model and the list shows the title taken from the first message.
    expect(page.locator("#chat-status")).to_contain_text("Answered by tiny-llama", timeout=REPLY_MS)
    expect(page.locator("#chat-sessions label.selected")).to_have_text("Tell me about Ray Serve")
    lengths = [n for n in page.evaluate("window.__replyLengths") if n > 0]
    assert len(set(lengths)) >= 3, f"the reply did not grow while streaming: {lengths}"

    stored = httpx.get(f"{ui_studio.gateway_url}/sessions/{session_id}", timeout=60).json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][0]["content"] == "Tell me about Ray Serve"
    # What the session stored is the reply the page showed.
    reply = stored["messages"][1]["content"]
    words, shown = shown_words(reply, page.locator('#chat-bot [data-testid="bot"]').last.text_content())
    assert reply.strip() and len(shown) >= 0.8 * len(words), (reply, shown)

    fill(page, "chat-title", "Ray questions")
    page.locator("#chat-rename").click()
    expect(page.locator("#chat-sessions label.selected")).to_have_text("Ray questions")
    assert httpx.get(f"{ui_studio.gateway_url}/sessions/{session_id}", timeout=60).json()["title"] == "Ray questions"

    page.locator("#chat-delete").click()
    expect(page.locator("#chat-status")).to_contain_text("Conversation deleted")
    expect(page.locator("#chat-sessions label", has_text="Ray questions")).to_have_count(0)
    assert httpx.get(f"{ui_studio.gateway_url}/sessions/{session_id}", timeout=60).status_code == 404
    assert studio_page.console_errors == []


def test_dataset_with_errors_gets_a_readable_report(studio_page, ui_studio, tmp_path):
    rows = [
        {"instruction": "Name the studio's default port.", "output": "8000"},
        {"instruction": "Where do sessions live?"},  # row 2: no output
        "this line is not JSON",  # row 3
        {"instruction": "What runs fine-tunes?", "output": "Ray Train"},
        {"instruction": "What serves models?", "input": "", "output": "Ray Serve and vLLM"},
    ]
    path = tmp_path / "with_errors.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")

    page = studio_page.open(ui_studio.ui_url).page
    studio_page.tab("Fine-tune")
    # Token statistics use the base model picked in the form, filled in when the tab opens.
    expect(page.locator("#ft-recommendation")).to_contain_text("LoRA r")
    page.locator("#ft-upload input[type=file]").set_input_files(str(path))
    report = page.locator("#ft-report")
    expect(report).to_contain_text("2 of 5 rows have problems", timeout=120_000)
    errors = page.locator("#ft-errors tr")
    expect(errors).to_have_count(3)  # header + rows 2 and 3
    expect(errors.nth(1).locator("td")).to_have_text(["2", "missing field 'output'"])
    expect(errors.nth(2).locator("td").first).to_have_text("3")
    expect(errors.nth(2).locator("td").nth(1)).to_contain_text("not valid JSON")
    expect(report).to_contain_text("Preview")
    expect(report.locator(".sage-conv").first).to_contain_text("Name the studio's default port.")
    assert studio_page.console_errors == []


def test_two_node_pipeline_from_the_palette_runs(studio_page, ui_studio):
    page = studio_page.open(ui_studio.ui_url).page
    studio_page.tab("Pipelines")
    page.locator("#pl-keyboard").click()  # the canvas's keyboard panel: tests/ui/test_ui_flow_canvas.py drags
    pick(page, "pl-operator", "source · Text input")
    page.locator("#pl-add").click()
    expect(page.locator("#pipeline-graph .sage-node")).to_have_count(1)
    pick(page, "pl-operator", "transform · Text template")
    page.locator("#pl-add").click()
    expect(page.locator("#pipeline-graph .sage-node")).to_have_count(2)

    # The selected node's form is generated from its operator's config schema.
    page.get_by_label("Template *").fill("Question: $text")
    page.locator("#pl-apply").click()
    expect(page.locator("#pl-status")).to_contain_text("Settings of text_template_1 updated")

    pick(page, "pl-from", "text_input_1")
    pick(page, "pl-to", "text_template_1")
    page.locator("#pl-connect").click()
    expect(page.locator("#pipeline-graph .sage-edge")).to_have_count(1)
    page.locator("#pl-undo").click()
    expect(page.locator("#pipeline-graph .sage-edge")).to_have_count(0)
    page.locator("#pl-redo").click()
    expect(page.locator("#pipeline-graph .sage-edge")).to_have_count(1)

    fill(page, "pl-input", "what is Ray?")
    page.locator("#pl-run").click()
    expect(page.locator("#pl-run-status")).to_contain_text("Ran in", timeout=REPLY_MS)
    results = page.locator("#pl-results")
    expect(results).to_contain_text("Question: what is Ray?")
    expect(results).to_contain_text("text_input_1")
    expect(page.locator("#pipeline-graph")).to_contain_text("ok ·")

    # Python export saves the pipeline and shows the script that rebuilds it.
    page.locator("#pl-python").click()
    expect(page.locator("#pl-status")).to_contain_text(".py is ready to download")
    expect(page.locator("#pl-python-code")).to_contain_text("text_template")
    saved = httpx.get(f"{ui_studio.gateway_url}/api/pipelines", timeout=60).json()
    assert any(p["nodes"] == 2 and p["connections"] == 1 for p in saved)
    assert studio_page.console_errors == []


def test_finetune_completes_with_a_loss_plot_and_becomes_the_chat_model(studio_page, ui_studio, tmp_path):
    rows = [{"instruction": f"Say the code word {i}.", "output": "The code word is Ray."} for i in range(16)]
    path = tmp_path / "codeword.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    page = studio_page.open(ui_studio.ui_url).page
    studio_page.tab("Fine-tune")
    expect(page.locator("#ft-recommendation")).to_contain_text("LoRA r")
    page.locator("#ft-upload input[type=file]").set_input_files(str(path))
    expect(page.locator("#ft-report")).to_contain_text("16 of 16 rows are valid", timeout=120_000)
    for elem_id, value in {"ft-name": "codeword", "ft-steps": "4", "ft-batch": "4", "ft-maxlen": "64",
                           "ft-lr": "0.01"}.items():
        fill(page, elem_id, value)
    page.locator("#ft-submit").click()
    expect(page.locator("#ft-status")).to_contain_text("submitted")
    expect(page.locator("#ft-tasks")).to_contain_text("codeword")
    # The tab refreshes by itself every few seconds until the Ray Train run is done (about a minute on an idle
    # 2-core machine; the bound is for a loaded one); the line under the table is about the selected task.
    expect(page.locator("#ft-task-status")).to_contain_text(re.compile(r"codeword \(ft[^)]+\): completed"),
                                                            timeout=480_000)
    expect(page.locator("#ft-log")).to_contain_text("16 rows, 4 steps per epoch, 4 steps")
    expect(page.locator("#ft-loss canvas, #ft-loss svg").first).to_be_visible()
    task_id = re.search(r"\((ft[^)]+)\)", page.locator("#ft-task input").input_value()).group(1)
    points = httpx.get(f"{ui_studio.gateway_url}/api/finetune/tasks/{task_id}/metrics", timeout=60).json()["points"]
    assert len(points) == 4

    page.locator("#ft-backend").click()
    expect(page.locator("#ft-task-status")).to_contain_text("The chat now uses", timeout=180_000)
    current = httpx.get(f"{ui_studio.gateway_url}/api/finetune/current-model", timeout=60).json()
    assert current["task_id"] == task_id

    studio_page.tab("Chat")
    page.locator("#chat-new").click()
    send(page, "Say the code word 3.")
    expect(page.locator("#chat-status")).to_contain_text(f"Answered by {current['model']}", timeout=REPLY_MS)
    assert studio_page.console_errors == []


# Records how long each compare column's reply is on every DOM change, to see both grow at once.
WATCH_COMPARE = """() => {
  window.__compare = [];
  const last = (id) => { const b = document.querySelectorAll(`#${id} [data-testid="bot"]`);
                         return b.length ? b[b.length - 1].textContent.length : 0; };
  new MutationObserver(() => window.__compare.push([last('compare-a'), last('compare-b')]))
    .observe(document.querySelector('#chat-compare'), {subtree: true, childList: true, characterData: true});
}"""


def test_compare_mode_feedback_and_a_finetune_on_the_rated_replies(studio_page, ui_studio):
    api = httpx.Client(base_url=ui_studio.gateway_url, timeout=60)
    tuned = api.get("/api/finetune/current-model").json()["model"]  # the previous test's fine-tune
    base = ui_studio.args["models"][0]["name"]
    page = studio_page.open(ui_studio.ui_url).page

    page.locator("#chat-compare .label-wrap").first.click()
    pick(page, "compare-model-a", base)
    pick(page, "compare-model-b", tuned)
    page.evaluate(WATCH_COMPARE)
    fill(page, "compare-input", "Say the code word 3.")
    page.locator("#compare-run").click()
    expect(page.locator("#compare-status")).to_contain_text(f"Answered by {base} (left) and {tuned} (right)",
                                                            timeout=REPLY_MS)
    left = page.locator('#compare-a [data-testid="bot"]').last.text_content()
    right = page.locator('#compare-b [data-testid="bot"]').last.text_content()
    assert left.strip() and right.strip() and left != right, (left, right)  # two models, two answers
    grew = page.evaluate("window.__compare")
    assert len({a for a, _ in grew}) >= 3 and len({b for _, b in grew}) >= 3, grew  # both streamed
    assert any(0 < a < len(left) and 0 < b < len(right) for a, b in grew), grew  # ... at the same time

    page.locator("#chat-new").click()
    send(page, "Say the code word 5.")
    expect(page.locator("#chat-status")).to_contain_text("Answered by", timeout=REPLY_MS)
    session_id = selected_session(page)
    fill(page, "chat-feedback-comment", "exactly right")
    page.locator("#chat-bot").get_by_role("button", name="Like", exact=True).last.click()
    expect(page.locator("#chat-status")).to_contain_text("stored with the conversation")
    stored = api.get(f"/sessions/{session_id}").json()["messages"]
    assert [(m["role"], m.get("rating"), m.get("comment")) for m in stored] == [
        ("user", None, None), ("assistant", 1, "exactly right")]

    studio_page.tab("Fine-tune")
    expect(page.locator("#ft-recommendation")).to_contain_text("LoRA r")
    fill(page, "ft-maxlen", "64")
    page.locator("#ft-feedback").click()
    expect(page.locator("#ft-report")).to_contain_text("rows are valid (chat format)", timeout=120_000)
    made = next(d for d in api.get("/api/datasets").json() if d["name"].startswith("Chat feedback"))
    assert made["format"] == "chat" and made["rows_valid"] >= 1
    assert f"({made['id']})" in page.locator("#ft-dataset input").input_value()  # picked for the fine-tune
    assert "Say the code word 5." in str(made["report"]["preview"])
    for elem_id, value in {"ft-name": "from feedback", "ft-steps": "1", "ft-batch": "1", "ft-lr": "0.01"}.items():
        fill(page, elem_id, value)
    page.locator("#ft-submit").click()
    expect(page.locator("#ft-status")).to_contain_text("submitted")
    task = next(t for t in api.get("/api/finetune/tasks").json() if t["name"] == "from feedback")
    assert task["config"]["dataset_id"] == made["id"] and task["config"]["format"] == "chat"
    expect(page.locator("#ft-task-status")).to_contain_text(re.compile(r"from feedback \(ft[^)]+\): completed"),
                                                            timeout=480_000)
    assert studio_page.console_errors == []


def test_every_tab_opens_without_console_errors(studio_page, ui_studio):
    api = httpx.Client(base_url=ui_studio.gateway_url, timeout=60)
    current = api.get("/api/finetune/current-model").json()["model"]
    backend = api.get("/memory/config").json()["backend"]
    node_ip = api.get("/api/system/gpu-info").json()["cluster"]["nodes"][0]["node_ip"]
    page = studio_page.open(ui_studio.ui_url).page
    # Something in every tab for the pictures: a conversation (memory stats) and a template in the editor.
    page.locator("#chat-new").click()
    send(page, "What is SAGE Studio?")
    expect(page.locator("#chat-status")).to_contain_text("Answered by", timeout=REPLY_MS)
    studio_page.tab("Pipelines")
    pick(page, "pl-template", "RAG Q&A over the studio docs")
    page.locator("#pl-use-template").click()
    expect(page.locator("#pipeline-graph .sage-node")).to_have_count(8)
    expect(page.locator("#pipeline-graph .sage-edge")).to_have_count(8)
    # What each tab's own load event (run when the tab opens) paints, and what the API says it should show: the
    # picture is taken once it is there.
    checks = {
        "Chat": [('#chat-bot [data-testid="bot"]', None)],
        "Pipelines": [("#pl-palette .sage-chip", None)],
        # The periodic refresh filled table, log and plot.
        "Fine-tune": [("#ft-task-status .sage-notice", None), ("#ft-recommendation", "LoRA r")],
        "Models": [("#models-current", current), ("#models-available .sage-card.sage-active", current)],
        "Memory": [("#memory-summary", f"Backend {backend}"), ("#memory-stats", "What is SAGE Studio?"),
                   ("#memory-stats .sage-bar", None)],
        "System": [("#system-resources .sage-card", "CPUs"), ("#system-nodes-panel", node_ip),
                   ("#system-health", ui_studio.gateway_url)],
    }
    for name in TABS:
        studio_page.tab(name)
        for selector, text in checks[name]:
            expect(page.locator(selector).first).to_be_visible()
            if text:
                expect(page.locator(selector).first).to_contain_text(text)
        assert studio_page.screenshot(f"ui-{name.lower()}").stat().st_size > 10_000
    expect(page.locator("#system-dashboard a")).to_have_attribute("href", ui_studio.dashboard_url)
    assert studio_page.console_errors == []


def test_chat_says_why_when_the_engine_is_stopped(studio_page, ui_studio, deploy_apps):
    deploy = deploy_apps
    page = studio_page.open(ui_studio.ui_url).page
    # Stop the engine: redeploy the studio's app without local models (as `--no-llm` does).
    stopped = ui_studio.args | {"models": [], "remote": None, "default_model": None}
    deploy(ui_studio.dashboard_url, [{"name": ui_studio.app_name, "route_prefix": ui_studio.route_prefix,
                                      "import_path": "deployments.app:build_app", "args": stopped}])
    try:
        send(page, "Are you there?")
        bubble = page.locator('#chat-bot [data-testid="bot"]').last
        expect(bubble).to_contain_text("No reply", timeout=REPLY_MS)
        expect(bubble).to_contain_text("No LLM engine is available")
        expect(page.locator("#chat-status")).to_contain_text("No LLM engine is available")
        # The rest of the UI keeps working.
        page.locator("#chat-new").click()
        expect(page.locator("#chat-sessions label.selected")).to_have_text("New chat")
        assert studio_page.console_errors == []
    finally:  # the engine comes back: the session's other tests, and the UI tests in later files, need it
        deploy(ui_studio.dashboard_url, [{"name": ui_studio.app_name, "route_prefix": ui_studio.route_prefix,
                                          "import_path": "deployments.app:build_app", "args": ui_studio.args}])
