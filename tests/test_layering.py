"""The package's imports run one way: no module of lib/ imports, at module level or inside a function, a module
that imports it back (directly or through others), and the CPU runner (msl_host) imports nothing of the suite."""
from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"


def module_name(path: Path) -> str:
    """lib/moe_reduce/exercises/__init__.py -> moe_reduce.exercises."""
    parts = path.relative_to(LIB).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules of `known` that a file imports anywhere in it (a package's submodule where `from pkg import
    sub` names one, else the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            subs = [f"{source}.{a.name}" for a in node.names]
            targets = [s for s in subs if s in known] or [source]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the lib/ modules it imports, for every module of lib/."""
    files = {module_name(p): p for p in LIB.rglob("*.py")}
    return {name: imported(path, name, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle found by a depth-first walk, as the modules along it (first repeated at the end)."""
    found, state, path = [], {}, []

    def walk(node: str) -> None:
        """Visit node, recording a cycle where an edge returns to a module on the current path."""
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return found


def test_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "moe_reduce.impls_torch" in graph["moe_reduce.impls"]  # imported inside torch_support
    assert "moe_reduce.contender" in graph["moe_reduce.impls_torch"]
    assert "moe_reduce.explorer" in graph["moe_reduce.exercises.lesson03"]  # from .. import explorer


def test_no_import_cycle_in_lib():
    assert cycles(import_graph()) == []


def test_runner_does_not_import_the_suite():
    graph = import_graph()
    assert {(m, d) for m, deps in graph.items() if m.startswith("msl_host") for d in deps
            if d.startswith("moe_reduce")} == set()
