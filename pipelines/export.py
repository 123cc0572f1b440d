"""Python export: a standalone script that rebuilds a pipeline with the same library and runs it.

The script spells every node and connection out as Python (readable, editable, diff-able), then runs it exactly as
the gateway does (``PipelineBuilder`` + ``PipelineRunner``) and prints the result as JSON, so its output matches an
online run of the same input. It needs this package installed; generators call the studio at ``SAGE_STUDIO_URL``.
"""

from __future__ import annotations

import pprint
import re
import textwrap

from pipelines.models import VisualPipeline

_HEADER = '''#!/usr/bin/env python
r"""{title}

{description}
Exported from SAGE Studio. Run it with:  python {filename} [--input TEXT | --input-json JSON] [--studio-url URL]
Generators call the studio's gateway at --studio-url (default: $SAGE_STUDIO_URL, else http://127.0.0.1:8000).
"""

import argparse
import json
import sys

from pipelines import PipelineBuilder, PipelineRunner
from pipelines.models import Connection, Position, VisualNode, VisualPipeline
from pipelines.operators.base import OperatorEnv
'''

_MAIN = '''

def main() -> int:
    parser = argparse.ArgumentParser(description=PIPELINE.name)
    parser.add_argument("--input", help="the run input, as text")
    parser.add_argument("--input-json", help="the run input, as a JSON object (e.g. a batch row)")
    parser.add_argument("--studio-url", help="the studio gateway generators call")
    parser.add_argument("--verbose", action="store_true", help="also print each node's status, timing and log")
    args = parser.parse_args()
    run_input = json.loads(args.input_json) if args.input_json else args.input{default_input}

    built = PipelineBuilder(env=OperatorEnv.from_environment(studio_url=args.studio_url)).build(PIPELINE)
    outcome = PipelineRunner(built).run(run_input)
    if args.verbose:
        for node in outcome.nodes.values():
            print(f"# {{node.node_id}} ({{node.type}}): {{node.status}} in {{node.duration_ms:.1f}} ms", file=sys.stderr)
            for line in node.logs:
                print(f"#   {{line}}", file=sys.stderr)
    if outcome.status != "ok":
        print(outcome.error, file=sys.stderr)
        return 1
    print(json.dumps(outcome.result, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def _literal(value, indent: int) -> str:
    """A Python literal for a JSON value, wrapped to fit, continuation lines indented."""
    text = pprint.pformat(value, width=100 - indent, sort_dicts=False)
    return text.replace("\n", "\n" + " " * indent)


def script_filename(pipeline: VisualPipeline) -> str:
    """A file name for the script derived from the pipeline's name (letters, digits and '_' only)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", pipeline.name).strip("_").lower() or "pipeline"
    return f"{slug[:60]}.py"


def export_python(pipeline: VisualPipeline, default_input: object = None) -> str:
    """The source of a script that rebuilds ``pipeline`` and runs it on ``--input`` (or ``default_input``)."""
    lines = [
        _HEADER.format(
            title=pipeline.name.replace('"""', "'''"),
            description=(textwrap.fill(pipeline.description.replace('"""', "'''"), 100) + "\n")
            if pipeline.description else "",
            filename=script_filename(pipeline),
        ),
        "PIPELINE = VisualPipeline(",
        f"    id={pipeline.id!r},",
        f"    name={pipeline.name!r},",
        f"    description={pipeline.description!r},",
        f"    created_at={pipeline.created_at!r},",
        f"    updated_at={pipeline.updated_at!r},",
        "    nodes=[",
    ]
    for node in pipeline.nodes:
        lines += [
            "        VisualNode(",
            f"            id={node.id!r},",
            f"            type={node.type!r},",
            f"            label={node.label!r},",
            f"            position=Position(x={node.position.x!r}, y={node.position.y!r}),",
            f"            config={_literal(node.config, 19)},",
            "        ),",
        ]
    lines.append("    ],")
    lines.append("    connections=[")
    for conn in pipeline.connections:
        port = f", target_port={conn.target_port!r}" if conn.target_port else ""
        lines.append(
            f"        Connection(source={conn.source!r}, target={conn.target!r}, "
            f"source_port={conn.source_port!r}{port}),"
        )
    lines += ["    ],", ")"]
    default = "" if default_input is None else f"\n    if run_input is None:\n        run_input = {_literal(default_input, 8)}"
    lines.append(_MAIN.format(default_input=default))
    return "\n".join(lines)
