"""The harness's import structure, read from the source (so imports inside functions count): data
flows one way (suite → cells → cards → page), each package imports only from floors below it, and
the plugin API reaches nothing above ``benchmark.core``."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1] / "benchmark"
# lower floors first; a package may import from a lower floor only (and from itself)
FLOORS = {
    "benchmark": 0,  # the package's __init__: its version string
    "benchmark.core": 0,
    "benchmark.records": 1,  # the card, its schema, the result store, metrics: below run and report
    "benchmark.api": 1,
    "benchmark.datasets": 2,  # plugins that ship with the harness
    "benchmark.run": 2,
    "benchmark.report": 2,
    "benchmark.checks": 3,  # run the harness on a plugin
    "benchmark.tools": 4,
    "benchmark.cli": 5,
    "benchmark.__main__": 6,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "benchmark" or name.startswith("benchmark.")}


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def module_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for path in sorted(ROOT.rglob("*.py")):
        name = _module_name(path)
        graph.add_node(name)
        for imported in _imports(path):
            graph.add_edge(name, imported)
    return graph


def test_every_package_has_a_floor():
    assert {_package(m) for m in module_graph()} <= set(FLOORS)


def test_no_module_imports_a_module_that_imports_it_back():
    assert list(nx.simple_cycles(module_graph())) == []


def test_packages_import_only_from_lower_floors():
    upward = [
        f"{a} -> {b}"
        for a, b in module_graph().edges
        if _package(a) != _package(b) and FLOORS[_package(b)] >= FLOORS[_package(a)]
    ]
    assert upward == [], "imports to a package on the same or a higher floor"


def test_the_plugin_api_imports_nothing_from_the_harness():
    graph = module_graph()
    reached = {b for a, b in graph.edges if _package(a) == "benchmark.api"}
    assert {_package(b) for b in reached} <= {"benchmark.api", "benchmark.core"}, sorted(reached)
