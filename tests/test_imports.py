"""The package's imports point one way: no module of `helpers` imports, at any depth, a module that imports it.

Imports inside functions count too: a cycle hidden in a function is still a cycle, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

HELPERS = Path(__file__).resolve().parents[1] / "helpers"


def project_imports(path: Path) -> set[str]:
    """The `helpers` modules a source file imports, wherever the import statement stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "helpers":
                found |= {f"helpers.{alias.name}" for alias in node.names}
            elif node.module.startswith("helpers."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("helpers.")}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {f"helpers.{path.stem}": path for path in HELPERS.glob("*.py") if path.stem != "__init__"}
    return {name: project_imports(path) & set(modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for neighbour in sorted(graph.get(node, ())):
            if state.get(neighbour) == 1:
                return stack[stack.index(neighbour) :] + [neighbour]
            if neighbour not in state and (cycle := visit(neighbour)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_inside_helpers():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    graph = {
        "helpers.a": {"helpers.b"},
        "helpers.b": {"helpers.c"},
        "helpers.c": {"helpers.a"},
        "helpers.d": set(),
    }
    assert find_cycle(graph) == ["helpers.a", "helpers.b", "helpers.c", "helpers.a"]
    assert find_cycle({"helpers.a": {"helpers.b"}, "helpers.b": set()}) is None


def test_mxfp4_and_layout_sit_below_export():
    graph = import_graph()
    assert graph["helpers.mxfp4"] == set()
    assert "helpers.export" not in graph["helpers.layout"] and "helpers.model" not in graph["helpers.layout"]
