"""The floors of the code base, checked on every import statement (module
level and inside functions alike):

  kernel      harness.kernel.*, harness._proto.*, the `harness` package itself
              -> imports only the kernel
  agents      agents.*                -> agents and the kernel
  controller  the rest of harness.*   -> the controller and the kernel
  face        harness.api, harness.cli, harness.cli_app, harness.cli_render, harness.cli_progress,
              harness.commands.*, harness.agent_start, harness.resident.*, harness.__main__ -> anything

and no import cycle between any two modules. The face is the only place
where the controller and the agents meet.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FACE = ("harness.api", "harness.cli", "harness.cli_app", "harness.cli_render", "harness.cli_progress",
        "harness.commands", "harness.agent_start", "harness.resident", "harness.__main__")


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("harness", "agents"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def floor(name: str) -> str:
    if name == "harness" or _within(name, "harness.kernel") or _within(name, "harness._proto"):
        return "kernel"
    if _within(name, "agents"):
        return "agents"
    if any(_within(name, f) for f in FACE):
        return "face"
    return "controller"


ALLOWED = {"kernel": {"kernel"}, "agents": {"agents", "kernel"}, "controller": {"controller", "kernel"},
           "face": {"kernel", "agents", "controller", "face"}}


def _targets(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = module.split(".") if is_package else module.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        # `from pkg import name`: the module pkg.name when there is one, else pkg.
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = []
    for n in names:
        while n and n not in known and "." in n:
            n = n.rsplit(".", 1)[0]
        if n in known:
            out.append(n)
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    known = set(modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name].update(t for t in _targets(node, name, path.name == "__init__.py", known) if t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph():
    return import_graph(_modules())


def test_the_checker_sees_a_cycle_and_every_floor():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert [floor(m) for m in ("harness", "harness.kernel.limits", "harness._proto.v1.agent_pb2", "agents.server",
                               "harness.controller.run", "harness.api", "harness.commands.plan")] == \
        ["kernel", "kernel", "kernel", "agents", "controller", "face", "face"]


def test_the_graph_is_read_from_every_kind_of_import(graph):
    # module level, inside a function, `from package import module`
    assert "harness.kernel.limits" in graph["agents.server"]
    assert "agents.server" in graph["harness.agent_start"]
    assert "harness.kernel.measure.policy" in graph["agents.host.runner"]  # imported inside main()


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_each_floor_imports_only_what_it_stands_on(graph):
    bad = sorted(f"{m} ({floor(m)}) imports {t} ({floor(t)})"
                 for m, targets in graph.items() for t in targets if floor(t) not in ALLOWED[floor(m)])
    assert bad == []


def test_the_package_root_stays_light():
    tree = ast.parse((ROOT / "harness" / "__init__.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert imports == [], "harness/__init__.py is imported by both sides; it holds the version only"
