"""The import graph of prismflow: no cycles (module-level or inside functions), and the
layers point down (the core never imports the workflow engine or the layers above it).

Reads the source with :mod:`ast` (every ``import`` statement, wherever it is), so an import
hidden inside a function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = ("io", "phantoms", "prism", "remidi", "baselines", "tracking", "metrics")
ABOVE = ("prismflow.tasks", "prismflow.workflows", "prismflow.engine", "prismflow.cli")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for prismflow/ and workflows/ (installed as
    prismflow.workflows)."""
    mods = {}
    for base, prefix in ((REPO / "prismflow", ["prismflow"]),
                         (REPO / "workflows", ["prismflow", "workflows"])):
        for f in base.rglob("*.py"):
            parts = prefix + list(f.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the prismflow modules it imports (statically, anywhere in its source)."""
    mods = _modules()
    graph = {}
    for mod, f in mods.items():
        pkg = mod.split(".") if f.name == "__init__.py" else mod.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = pkg[:len(pkg) - node.level + 1] if node.level else []
                name = ".".join(base + ([node.module] if node.module else []))
                names = [f"{name}.{a.name}" if f"{name}.{a.name}" in mods else name
                         for a in node.names]
            for n in names:
                while n and n not in mods:      # `from pkg.mod import obj` -> pkg.mod
                    n = n.rpartition(".")[0]
                if n and n != mod:
                    deps.add(n)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_imports_inside_functions():
    graph = import_graph()
    # prism/warmstart.py imports prism.fit inside its functions only
    assert "prismflow.prism.fit" in graph["prismflow.prism.warmstart"]


def test_no_import_cycle_in_prismflow():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_core_never_imports_the_layers_above():
    graph = import_graph()
    bad = [(m, d) for m, deps in graph.items() for d in deps
           if m.split(".")[1] in CORE and d.startswith(ABOVE)]
    assert not bad, bad
