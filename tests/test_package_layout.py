"""The package keeps the shape DESIGN.md §3 gives it: one idea per module (under ~300 lines), a first
docstring paragraph that names the chapter teaching it, no branching on model-kind strings below cli/,
and a one-way import graph (no cycles). A change that breaks one of these fails here, not in review."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "diffusion_lab"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_modules_are_small():
    big = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them, one idea per module): {big}"


def test_every_module_names_its_chapter():
    missing = [module_name(p) for p in MODULES
               if "chapter" not in (ast.get_docstring(ast.parse(p.read_text())) or "").split("\n\n")[0].lower()]
    assert not missing, f"modules whose docstring does not open by naming the chapter that teaches them: {missing}"


def test_no_model_kind_branches_below_cli():
    pattern = re.compile(r"""kind"?\]?\s*(==|!=|in)\s*[("']""")
    hits = [f"{module_name(p)}:{i}" for p in MODULES if "cli" not in p.relative_to(PACKAGE).parts
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, f"branches on a model-kind string below cli/ (add a pipeline or a registry line instead): {hits}"


def import_graph() -> dict[str, set[str]]:
    names = {module_name(p): p for p in MODULES}

    def resolve(target: str) -> str | None:
        while target and target not in names:
            target = target.rpartition(".")[0]
        return target or None

    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("diffusion_lab"):
                targets = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("diffusion_lab")]
            for target in targets:
                found = resolve(target)
                # a submodule importing its own package's __init__ is how re-exports work, not a cycle of ideas
                if found and found != name and not name.startswith(found + "."):
                    edges.add(found)
        graph[name] = edges
    return graph


def test_import_graph_has_no_cycles():
    graph, state, cycles = import_graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, f"import cycles: {cycles}"


def test_the_graph_sees_real_imports():
    """Guard the guard: the graph must contain edges we know exist."""
    graph = import_graph()
    assert "diffusion_lab.schedules" in graph["diffusion_lab.training.diffusion"]
    assert "diffusion_lab.pipelines.base" in graph["diffusion_lab.pipelines.registry"]
