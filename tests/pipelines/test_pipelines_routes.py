"""/api/operators and /api/pipelines over HTTP (FastAPI TestClient): CRUD, 4xx messages, import/export, templates."""

from __future__ import annotations

import json

import pytest

from tests.pipelines.pipeline_helpers import VALIDATION_CASES, make_pipeline


def message(response) -> str:
    return response.json()["error"]["message"]


def diamond_body():
    return make_pipeline(
        [{"id": "s", "type": "text_input"},
         {"id": "a", "type": "text_template", "config": {"template": "A($text)"}},
         {"id": "b", "type": "text_template", "config": {"template": "B($text)"}},
         {"id": "j", "type": "join_text"}],
        [["s", "a"], ["s", "b"], ["a", "j"], ["b", "j"]],
        name="Diamond",
    ).model_dump(mode="json", exclude={"id", "created_at", "updated_at"})


def test_palette(api):
    body = api.get("/api/operators").json()
    assert "documents" in body["data_types"]
    generator = next(o for o in body["operators"] if o["type"] == "generator")
    assert generator["config_schema"]["properties"]["endpoint"]["default"] == "studio"
    assert [o["category"] for o in body["operators"]][0] == "source"


def test_crud_run_and_round_trip(api):
    created = api.post("/api/pipelines", json=diamond_body())
    assert created.status_code == 201
    saved = created.json()
    pid = saved["id"]
    assert pid.startswith("pl_") and api.get(f"/api/pipelines/{pid}").json() == saved
    assert [p["id"] for p in api.get("/api/pipelines").json()] == [pid]

    ran = api.post(f"/api/pipelines/{pid}/run", json={"input": "x"}).json()
    assert ran["status"] == "ok" and ran["result"] == {"j": "A(x)\nB(x)"}
    assert set(ran["nodes"]) == {"s", "a", "b", "j"} and all(n["duration_ms"] >= 0 for n in ran["nodes"].values())

    exported = api.get(f"/api/pipelines/{pid}/export")
    assert exported.headers["content-disposition"] == f'attachment; filename="{pid}.json"'
    imported = api.post("/api/pipelines/import", files={"file": ("p.json", exported.content)}).json()
    assert imported["id"] != pid
    original = api.get(f"/api/pipelines/{pid}").json()
    assert {k: v for k, v in imported.items() if k not in ("id", "created_at", "updated_at")} == \
        {k: v for k, v in original.items() if k not in ("id", "created_at", "updated_at")}
    assert api.post("/api/pipelines/import", content=exported.content).status_code == 201

    script = api.get(f"/api/pipelines/{pid}/python")
    assert script.headers["content-type"].startswith("text/x-python") and "PipelineRunner" in script.text
    compile(script.text, "exported.py", "exec")

    changed = dict(saved, name="Renamed")
    assert api.put(f"/api/pipelines/{pid}", json=changed).json()["name"] == "Renamed"
    assert api.delete(f"/api/pipelines/{pid}").status_code == 204
    gone = api.get(f"/api/pipelines/{pid}")
    assert gone.status_code == 404 and message(gone) == f"No pipeline with id '{pid}'."


@pytest.mark.parametrize("code", sorted(VALIDATION_CASES))
def test_each_validation_case_is_a_422_naming_the_culprit(api, code):
    pipeline, fragment = VALIDATION_CASES[code]
    body = pipeline.model_dump(mode="json")
    for response in (api.post("/api/pipelines", json=body),
                     api.post("/api/pipelines/run", json={"pipeline": body, "input": "x"})):
        assert response.status_code == 422, response.text
        assert fragment in message(response)
    report = api.post("/api/pipelines/validate", json=body).json()
    assert not report["valid"] and code in {i["code"] for i in report["issues"]}


def test_bad_requests_get_clear_4xx(api):
    assert "Invalid request" in message(api.post("/api/pipelines", json={"nodes": "not a list"}))
    bad_import = api.post("/api/pipelines/import", content=b"{not json")
    assert bad_import.status_code == 400 and "not valid JSON" in message(bad_import)
    future = {"format": "sage-studio-pipeline", "version": 99, "pipeline": diamond_body()}
    assert "version 99 is not supported" in message(api.post("/api/pipelines/import", content=json.dumps(future)))
    assert api.post("/api/pipelines/templates/nope").status_code == 404
    assert api.get("/api/pipelines/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert api.get("/api/pipelines/batches/bj_000000000000").status_code == 404


def test_file_source_traversal_through_the_api_is_refused(api):
    body = make_pipeline([{"id": "f", "type": "file_source", "config": {"folder": "uploads", "path": "../../../etc/passwd"}}],
                         []).model_dump(mode="json")
    ran = api.post("/api/pipelines/run", json={"pipeline": body}).json()
    assert ran["status"] == "error" and "outside the folders pipelines may read" in ran["error"]
    assert "root:" not in json.dumps(ran)


def test_templates_are_listed_and_instantiated(api):
    names = {t["name"] for t in api.get("/api/pipelines/templates").json()}
    assert names == {"rag_qa", "chat_with_memory", "summarize_file"}
    created = api.post("/api/pipelines/templates/rag_qa")
    assert created.status_code == 201 and created.json()["name"] == "RAG Q&A over the studio docs"


def test_uploaded_files_get_safe_names_and_feed_a_file_source(api):
    sent = api.post("/api/pipelines/files", files={"file": ("../../My notes!.md", b"# Notes\n\nThe code word is tangerine.")})
    assert sent.status_code == 201 and sent.json()["name"] == "My_notes.md"
    again = api.post("/api/pipelines/files", files={"file": ("My notes!.md", b"second")}).json()
    assert again["name"] == "My_notes-2.md"
    assert [f["name"] for f in api.get("/api/pipelines/files").json()] == ["My_notes-2.md", "My_notes.md"]
    body = make_pipeline([{"id": "f", "type": "file_source", "config": {"folder": "files", "path": "My_notes.md"}}],
                         []).model_dump(mode="json")
    ran = api.post("/api/pipelines/run", json={"pipeline": body}).json()
    assert "tangerine" in ran["result"]["f"][0]["text"]
    assert api.post("/api/pipelines/files", files={"file": ("x.exe", b"MZ")}).status_code == 400
    assert api.post("/api/pipelines/files", files={"file": ("x.txt", b"\xff\xfe\x00")}).status_code == 400
