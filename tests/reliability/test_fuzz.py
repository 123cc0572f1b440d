"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis + hypothesis).

Every operation gets valid requests (``positive``) and schema-violating ones (``negative``); the only property
checked is the one every client relies on: an answer comes (no hang) and it is never a 5xx. The OpenAI routes
(``/v1``, ``/health``) are fuzzed on the shared studio, where a real vLLM engine answers them; everything else on
the keyed app with its own SAGE_HOME (with the key), so what the fuzzer creates or deletes stays there.
Generation is derandomized (the same cases every run, so CI is not flaky); ``SAGE_FUZZ_EXAMPLES`` raises the
examples per operation and mode for a deeper run by hand.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import HypothesisException
from schemathesis import GenerationMode

from reliability_helpers import report

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("SAGE_FUZZ_EXAMPLES", "6"))
REQUEST_TIMEOUT_S = 10  # issue 19: long operations answer 202 at once, so every answer comes within this
# Operations that do real work on every valid call (tokenize and validate a dataset on Ray Data, generate up to
# the context length): fewer examples keep the run within its CI budget.
HEAVY = {
    ("POST", "/api/finetune/prepare-docs-dataset"): 1,
    ("POST", "/api/datasets"): 2,
    ("POST", "/api/datasets/{dataset_id}/validate"): 2,
    ("POST", "/v1/chat/completions"): 4,
    ("POST", "/v1/completions"): 4,
}


def on_studio(path: str) -> bool:
    return path.startswith("/v1/") or path == "/health"


def fuzz(operation, base_url: str, headers: dict, mode: GenerationMode, examples: int) -> tuple[Counter, list[str]]:
    """Run ``examples`` generated cases of one operation; returns status counts and the problems found."""
    statuses: Counter = Counter()
    problems: list[str] = []

    # Only the generate phase: a problem is recorded with its curl reproducer rather than raised and shrunk,
    # so one run reports every failing operation.
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        started = time.monotonic()
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S)
        except requests.Timeout:
            statuses["hang"] += 1
            problems.append(f"no answer in {REQUEST_TIMEOUT_S} s: {case.as_curl_command(base_url=base_url)}")
            return
        except requests.ConnectionError as exc:
            statuses["connection"] += 1
            problems.append(f"connection failed ({exc}): {case.as_curl_command(base_url=base_url)}")
            return
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            took = time.monotonic() - started
            problems.append(f"{response.status_code} after {took:.1f} s: {response.text[:300]!r}\n    "
                            f"{case.as_curl_command(base_url=base_url)}")

    try:
        run()
    except HypothesisException as exc:  # e.g. no negative case exists for an operation without inputs
        statuses[f"skipped ({type(exc).__name__})"] += 1
    return statuses, problems


def test_no_5xx_and_no_hang_over_the_whole_schema(studio, secure_app, pytestconfig):
    targets = [
        (schemathesis.openapi.from_url(f"{studio.base_url}/openapi.json"), studio.base_url, {}, on_studio),
        (schemathesis.openapi.from_url(f"{secure_app.url}/openapi.json"), secure_app.url, secure_app.auth,
         lambda path: not on_studio(path)),
    ]
    started = time.monotonic()
    cases, operations, problems, overall = 0, 0, [], Counter()
    for schema, base_url, headers, wanted in targets:
        for result in schema.get_all_operations():
            operation = result.ok()
            if not wanted(operation.path):
                continue
            operations += 1
            examples = HEAVY.get((operation.method.upper(), operation.path), EXAMPLES)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                statuses, found = fuzz(operation, base_url, headers, mode, examples)
                cases += sum(n for status, n in statuses.items() if not str(status).startswith("skipped"))
                overall.update(statuses)
                problems += [f"{operation.method.upper()} {operation.path} [{mode.value}]: {p}" for p in found]
    took = time.monotonic() - started
    by_status = ", ".join(f"{status}: {n}" for status, n in sorted(overall.items(), key=lambda kv: str(kv[0])))
    report(pytestconfig, f"[fuzz] {cases} cases over {operations} operations in {took:.0f} s "
                         f"({EXAMPLES} examples per operation and mode); answers {by_status}; problems {len(problems)}")
    assert operations >= 45, operations
    assert not problems, "\n".join(problems)
