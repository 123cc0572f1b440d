"""The pipeline in docs/pipelines.md is valid and does what the page says."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipelines import VisualPipeline
from tests.pipelines.pipeline_helpers import run

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipelines.md"


def test_documented_diamond_runs(pl_env):
    block = re.search(r"```json\n(.*?)```", DOC.read_text(), re.S).group(1)
    outcome = run(VisualPipeline.model_validate(json.loads(block)), pl_env, {"question": "why"})
    assert outcome.status == "ok" and outcome.result == {"j": "A: why\nB: why"}
