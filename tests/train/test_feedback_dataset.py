"""Feedback over real HTTP: ratings on assistant replies (4xx for a user message, an unknown index or session, a bad
rating), and the chat-format dataset made from them on real Ray Data, with its validation report."""

from __future__ import annotations


def error(response) -> str:
    return response.json()["error"]["message"]


def test_rated_replies_become_a_validated_chat_dataset(http, ft_app):
    store = ft_app.app.state.services.memory.store
    liked, other = http.post("/sessions").json()["id"], http.post("/sessions").json()["id"]
    for q, a in (("Say the word number 1.", "beta"), ("Say the word number 2.", "banana"), ("And 3?", "delta")):
        store.append_dialog(liked, q, a)
    store.append_dialog(other, "Say the word number 0.", "alpha")

    r = http.post(f"/sessions/{liked}/feedback", json={"message_index": 1, "rating": 1, "comment": "right"})
    assert r.status_code == 200 and (r.json()["rating"], r.json()["comment"]) == (1, "right")
    assert http.post(f"/sessions/{liked}/feedback", json={"message_index": 3, "rating": -1}).status_code == 200
    assert http.post(f"/sessions/{liked}/feedback", json={"message_index": 5, "rating": 1}).status_code == 200
    assert [m.get("rating") for m in http.get(f"/sessions/{liked}").json()["messages"]] == [
        None, 1, None, -1, None, 1]
    r = http.post(f"/sessions/{liked}/feedback", json={"message_index": 0, "rating": 1})
    assert r.status_code == 400 and "user message" in error(r)
    r = http.post(f"/sessions/{liked}/feedback", json={"message_index": 9, "rating": 1})
    assert r.status_code == 404 and "no message 9" in error(r)
    r = http.post(f"/sessions/{liked}/feedback", json={"message_index": 1, "rating": 2})
    assert r.status_code == 422 and "rating" in error(r)
    r = http.post("/sessions/nope/feedback", json={"message_index": 1, "rating": 1})
    assert r.status_code == 404

    r = http.post("/api/datasets/from-feedback", json={"min_rating": 1, "model": "tiny-llama", "max_length": 64})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert (ds["format"], ds["rows_valid"], ds["report"]["rows_invalid"]) == ("chat", 2, 0)
    preview = str(ds["report"]["preview"])
    assert "beta" in preview and "delta" in preview and "banana" not in preview  # thumbs-up replies only
    assert http.get(f"/api/datasets/{ds['id']}").status_code == 200  # in the dataset store, ready to fine-tune on
    r = http.post("/api/datasets/from-feedback", json={"min_rating": -1, "session_ids": [liked],
                                                        "model": "tiny-llama", "max_length": 64})
    assert r.status_code == 201 and r.json()["rows_valid"] == 3
    r = http.post("/api/datasets/from-feedback", json={"session_ids": [other], "model": "tiny-llama"})
    assert r.status_code == 422 and "No thumbs-up assistant reply in 1 session" in error(r)
    assert http.post("/api/datasets/from-feedback", json={"session_ids": ["nope"]}).status_code == 404
