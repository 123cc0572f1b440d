"""The layout's rules, read from the code: imports point one way, no cycles inside ``deployments``, short files.

    sage_studio  ←  pipelines, train  ←  deployments  ←  sage_cli        (ui ← sage_studio only; deployments hosts ui)

Every import counts: top-level, inside a function, and Serve ``import_path`` strings ("package.module:attr").
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sage_studio", "pipelines", "train", "deployments", "ui", "sage_cli")
# What each package may import besides itself (and third-party code).
ALLOWED = {
    "sage_studio": set(),
    "pipelines": {"sage_studio"},
    "train": {"sage_studio"},
    "ui": {"sage_studio"},
    "deployments": {"sage_studio", "pipelines", "train", "ui"},
    "sage_cli": {"sage_studio", "pipelines", "train", "deployments", "ui"},
}
MAX_LINES = 400


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    return _imports_in(path.read_text(encoding="utf-8"))


def _imports_in(source: str) -> set[str]:
    """Every module of ours the source imports, wherever the import stands, plus ``import_path``-style strings."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            head, sep, _ = node.value.partition(":")
            if sep and head.split(".")[0] in PACKAGES and head.replace(".", "").replace("_", "").isalnum():
                found.add(head)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package: str) -> None:
    wrong = [f"{_module(path)} imports {name}"
             for path in _sources(package) for name in sorted(_imports(path))
             if name.split(".")[0] not in ALLOWED[package] | {package}]
    assert not wrong, "imports against the layout:\n" + "\n".join(wrong)


def test_the_scan_sees_function_level_imports_and_import_paths() -> None:
    # The rules are only as good as the scan: a late import and a Serve import_path must both be found.
    source = "def f():\n    from train.jobs import JobManager\n    import ui.app\n\nPATH = 'deployments.app:build_app'\n"
    assert _imports_in(source) == {"train.jobs", "train.jobs.JobManager", "ui.app", "deployments.app"}


def test_no_import_cycle_inside_deployments() -> None:
    modules = {_module(path): path for path in _sources("deployments")}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in _imports(path):
            # "deployments.engines.base.OpenAIRequest" → the longest prefix that is a module
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                graph.add_edge(name, target)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, "import cycles in deployments/: " + "; ".join(" → ".join(c + c[:1]) for c in cycles)


def test_no_source_file_over_400_lines() -> None:
    long = [f"{path.relative_to(ROOT)}: {n} lines"
            for folder in (*PACKAGES, "tests", "bench", "scripts") for path in sorted((ROOT / folder).rglob("*.py"))
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, "files over 400 lines:\n" + "\n".join(long)
