"""The runner walks a real DAG: branches run, joins wait for every branch, failures stop only what depends on them."""

from __future__ import annotations

import threading
import time

from pipelines import PipelineBuilder, PipelineRunner
from pipelines.operators.base import DataType, Operator, OperatorConfig, Port, compatible
from pipelines.registry import NodeRegistry, default_registry
from pipelines.operators import BUILTIN_OPERATORS
from tests.pipelines.pipeline_helpers import hybrid_rag_pipeline, make_pipeline, run


def diamond():
    return make_pipeline(
        [
            {"id": "source", "type": "text_input"},
            {"id": "left", "type": "text_template", "config": {"template": "left saw <$text>"}},
            {"id": "right", "type": "text_template", "config": {"template": "right saw <$text>"}},
            {"id": "join", "type": "join_text", "config": {"separator": " | ", "label_branches": True}},
        ],
        [["source", "left"], ["source", "right"], ["left", "join"], ["right", "join"]],
        name="diamond",
    )


def test_diamond_runs_both_branches_and_the_join_sees_both(pl_env):
    outcome = run(diamond(), pl_env, "hello")
    assert outcome.status == "ok"
    assert [n for n in outcome.nodes] == ["source", "left", "right", "join"]
    assert outcome.nodes["left"].output == "left saw <hello>"
    assert outcome.nodes["right"].output == "right saw <hello>"
    assert outcome.result == {"join": "left: left saw <hello> | right: right saw <hello>"}


def test_hybrid_retrieval_diamond_merges_what_each_branch_found(pl_env):
    outcome = run(hybrid_rag_pipeline(), pl_env, {"question": "Which port does the studio use by default?"})
    assert outcome.status == "ok", outcome.error
    dense_ids = {d["id"] for d in outcome.nodes["dense"].output}
    bm25_ids = {d["id"] for d in outcome.nodes["bm25"].output}
    merged = outcome.result["merge"]
    assert {d["id"] for d in merged} == dense_ids | bm25_ids
    found_by = {d["id"]: set(d["metadata"]["found_by"]) for d in merged}
    assert all(found_by[i] >= {"dense"} for i in dense_ids) and all(found_by[i] >= {"bm25"} for i in bm25_ids)
    assert any("The default port is 8000" in d["text"] for d in merged)


class _SlowEcho(Operator):
    """Test operator: sleeps, then echoes; records how many run at once to prove branches run in parallel."""

    type_name, category, label, description = "slow_echo", "transform", "Slow", "Sleeps then echoes."
    Config = OperatorConfig
    inputs = {"text": Port(DataType.TEXT)}
    output = DataType.TEXT
    active = 0
    peak = 0
    lock = threading.Lock()

    def run(self, inputs, ctx):
        with _SlowEcho.lock:
            _SlowEcho.active += 1
            _SlowEcho.peak = max(_SlowEcho.peak, _SlowEcho.active)
        time.sleep(0.3)
        with _SlowEcho.lock:
            _SlowEcho.active -= 1
        return inputs["text"]


def test_independent_branches_run_concurrently(pl_env):
    registry = NodeRegistry(BUILTIN_OPERATORS + (_SlowEcho,))
    pipeline = make_pipeline(
        [{"id": "s", "type": "text_input"}, {"id": "a", "type": "slow_echo"}, {"id": "b", "type": "slow_echo"},
         {"id": "j", "type": "join_text"}],
        [["s", "a"], ["s", "b"], ["a", "j"], ["b", "j"]],
    )
    started = time.perf_counter()
    outcome = PipelineRunner(PipelineBuilder(registry, pl_env).build(pipeline)).run("x")
    assert outcome.status == "ok" and outcome.result == {"j": "x\nx"}
    assert _SlowEcho.peak == 2
    assert time.perf_counter() - started < 0.55


def test_a_failing_branch_skips_its_dependents_and_the_other_branch_still_runs(pl_env):
    pipeline = make_pipeline(
        [
            {"id": "q", "type": "text_input", "config": {"field": "question"}},
            {"id": "missing", "type": "file_source", "config": {"folder": "uploads", "path": "absent.md"}},
            {"id": "chunks", "type": "chunker"},
            {"id": "echo", "type": "text_template", "config": {"template": "still ran: $text"}},
        ],
        [["missing", "chunks"], ["q", "echo"]],
    )
    outcome = run(pipeline, pl_env, {"question": "hi"})
    assert outcome.status == "error"
    assert outcome.error == "Node 'missing' (file_source) failed: no file 'absent.md' in folder 'uploads'"
    assert outcome.nodes["chunks"].status == "skipped" and "'missing' failed" in outcome.nodes["chunks"].error
    assert outcome.nodes["echo"].output == "still ran: hi"
    assert outcome.result == {"echo": "still ran: hi"}


def test_input_independent_nodes_are_computed_once_per_built_pipeline(pl_env):
    runner = PipelineRunner(PipelineBuilder(env=pl_env).build(hybrid_rag_pipeline()))
    first = runner.run({"question": "Where is data kept?"})
    second = runner.run({"question": "What does the memory backend kv do?"})
    assert not first.nodes["chunks"].cached and second.nodes["chunks"].cached
    assert second.nodes["chunks"].output == first.nodes["chunks"].output
    assert not second.nodes["question"].cached and not second.nodes["dense"].cached
    assert first.result != second.result


def test_missing_input_field_is_a_clear_node_error(pl_env):
    outcome = run(diamond(), pl_env, {"prompt": "x"})
    assert outcome.error == "Node 'source' (text_input) failed: the input has no field 'text' (its fields: prompt)"


def test_palette_lists_every_operator_with_a_config_schema():
    palette = default_registry().palette()
    types = {entry["type"] for entry in palette}
    assert {"text_input", "file_source", "json_source", "csv_source", "chunker", "embedder", "retriever", "reranker",
            "promptor", "generator", "f1_evaluator", "recall_evaluator", "accuracy_evaluator", "print_sink",
            "file_sink", "memory_sink"} <= types
    retriever = next(e for e in palette if e["type"] == "retriever")
    assert retriever["config_schema"]["properties"]["top_k"]["default"] == 3
    assert {p["name"] for p in retriever["inputs"]} == {"documents", "query"}
    assert all(e["description"] for e in palette)


def test_palette_ports_carry_the_builders_type_rule():
    # Each input lists the output types it accepts, computed with the builder's `compatible`, for every pair.
    for entry in default_registry().palette():
        for port in entry["inputs"]:
            accepted = DataType(port["type"])
            assert port["accepts"] == [t.value for t in DataType if compatible(t, accepted)]
    generator = next(e for e in default_registry().palette() if e["type"] == "generator")
    assert {p["name"]: p["accepts"] for p in generator["inputs"]} == {"prompt": ["messages", "any"],
                                                                      "session": ["text", "any"]}
