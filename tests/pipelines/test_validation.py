"""Each validation case gives its own issue code and a message naming the node or connection at fault."""

from __future__ import annotations

import pytest

from pipelines import PipelineBuilder, PipelineValidationError
from tests.pipelines.pipeline_helpers import make_pipeline

TEXT = {"id": "q", "type": "text_input"}
UPPER = {"id": "t", "type": "text_template", "config": {"template": "Q: $text"}}

CASES = {
    "empty_pipeline": (make_pipeline([], []), "has no nodes"),
    "unknown_type": (make_pipeline([TEXT, {"id": "x", "type": "python_exec"}], []), "Node 'x' has unknown type 'python_exec'"),
    "dangling_connection": (make_pipeline([TEXT, UPPER], [["q", "t"], ["t", "ghost"]]), "target node 'ghost', which does not exist"),
    "duplicate_node": (make_pipeline([TEXT, dict(TEXT)], []), "Two nodes share the id 'q'"),
    "duplicate_connection": (
        make_pipeline([TEXT, {"id": "j", "type": "join_text"}], [["q", "j"], ["q", "j"]]),
        "Connection 'q.output → j' appears twice",
    ),
    "cycle": (
        make_pipeline(
            [TEXT, UPPER, {"id": "u", "type": "text_template", "config": {"template": "$text!"}},
             {"id": "j", "type": "join_text"}],
            [["q", "j"], ["u", "j"], {"source": "j", "target": "t"}, ["t", "u"]],
        ),
        "cycle (",
    ),
    "invalid_config": (
        make_pipeline([TEXT, {"id": "ret", "type": "retriever", "config": {"top_k": "many"}},
                       {"id": "d", "type": "json_source", "config": {"data": "[]"}}],
                      [{"source": "d", "target": "ret", "target_port": "documents"},
                       {"source": "q", "target": "ret", "target_port": "query"}]),
        "Node 'ret' (retriever) has an invalid config: 'top_k': Input should be a valid integer",
    ),
    "incompatible_ports": (
        make_pipeline([TEXT, {"id": "g", "type": "generator"}], [{"source": "q", "target": "g", "target_port": "prompt"}]),
        "node 'q' produces text but input 'prompt' of node 'g' expects messages",
    ),
    "missing_input": (make_pipeline([TEXT, {"id": "c", "type": "chunker"}], []), "Input 'documents' of node 'c'"),
    "unknown_port": (
        make_pipeline([TEXT, {"id": "r", "type": "retriever"}], [{"source": "q", "target": "r", "target_port": "nope"}]),
        "node 'r' (retriever) has no input 'nope'",
    ),
}


@pytest.mark.parametrize("code", sorted(CASES))
def test_each_case_has_its_own_clear_issue(code):
    pipeline, fragment = CASES[code]
    issues = PipelineBuilder().validate(pipeline)
    assert code in {i.code for i in issues}, issues
    assert any(fragment in i.message for i in issues if i.code == code), [i.message for i in issues]
    with pytest.raises(PipelineValidationError) as err:
        PipelineBuilder().build(pipeline)
    assert fragment in str(err.value)


def test_missing_required_config_names_the_field():
    pipeline = make_pipeline([{"id": "f", "type": "file_source", "config": {}}], [])
    [issue] = PipelineBuilder().validate(pipeline)
    assert issue.code == "invalid_config" and issue.node == "f"
    assert "'path' is required" in issue.message


def test_unknown_config_key_is_refused():
    pipeline = make_pipeline([{"id": "q", "type": "text_input", "config": {"code": "import os"}}], [])
    [issue] = PipelineBuilder().validate(pipeline)
    assert "'code' is not a setting of text_input" in issue.message


def test_template_placeholders_are_checked():
    pipeline = make_pipeline([TEXT, {"id": "t", "type": "text_template", "config": {"template": "$text ${os}"}}],
                             [["q", "t"]])
    [issue] = PipelineBuilder().validate(pipeline)
    assert "unknown placeholder(s) ['os']" in issue.message


def test_single_input_port_refuses_two_sources():
    pipeline = make_pipeline([TEXT, dict(TEXT, id="q2"), UPPER], [["q", "t"], ["q2", "t"]])
    [issue] = PipelineBuilder().validate(pipeline)
    assert issue.code == "too_many_inputs" and "use a join node" in issue.message


def test_valid_pipeline_has_no_issues_and_react_flow_edges_are_read():
    pipeline = make_pipeline([TEXT, UPPER], [{"source": "q", "target": "t", "sourceHandle": None, "targetHandle": "text"}])
    assert PipelineBuilder().validate(pipeline) == []
