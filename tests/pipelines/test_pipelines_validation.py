"""Each validation case gives its own issue code and a message naming the node or connection at fault."""

from __future__ import annotations

import pytest

from pipelines import PipelineBuilder, PipelineValidationError
from tests.pipelines.pipeline_helpers import VALIDATION_CASES as CASES
from tests.pipelines.pipeline_helpers import make_pipeline

TEXT = {"id": "q", "type": "text_input"}
UPPER = {"id": "t", "type": "text_template", "config": {"template": "Q: $text"}}

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
