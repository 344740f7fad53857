"""No import cycles: the module-level import graph of the project's packages is acyclic."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "cli", "common", "flexselect", "lab", "streams")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name lands in (`a.b.C` -> `a.b` when `C` is not a module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Module-level imports: top level and in top-level if/try, TYPE_CHECKING ones included (a cycle hidden
    from the interpreter is still a cycle between the modules)."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            pending.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                pending.extend(handler.body)
    return found


def imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules `module` imports at module level, with the packages (`__init__`s) on the way."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = ".".join(p for p in (base if node.level else "", node.module or "") if p)
            names = [f"{source}.{alias.name}" for alias in node.names]
        for name in names:
            target = resolve(name, modules)
            if target is None:
                continue
            # Importing a.b.c runs a/__init__ and a/b/__init__ first.
            parts = target.split(".")
            targets.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    targets.discard(module)
    return targets


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    edges = {name: imported(name, path, modules) for name, path in modules.items()}
    for name, targets in edges.items():
        # A submodule does not cycle through its ancestors' __init__ merely by being their child.
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        edges[name] = targets - ancestors
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another (strongly connected, more than one module), sorted."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in order:
            visit(node)
    return sorted(groups)


def path_through(group: list[str], edges: dict[str, set[str]]) -> str:
    """One import path around a group, a -> ... -> a, to name the cycle to whoever breaks it."""
    start, members = group[0], set(group)
    path, seen = [start], {start}
    while True:
        nxt = sorted(edges[path[-1]] & members)
        back = start if start in nxt else None
        if back or not (fresh := [n for n in nxt if n not in seen]):
            return " -> ".join([*path, back or nxt[0]])
        path.append(fresh[0])
        seen.add(fresh[0])


def test_the_import_graph_reads_a_known_edge():
    assert "agent.mqtt.errors" in graph()["agent.mqtt.config"]


def test_the_import_graph_counts_type_checking_imports():
    assert "agent.worker" in graph()["agent.web.facade"]  # named only under TYPE_CHECKING there


def test_cycles_finds_a_cycle_and_names_its_path():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert path_through(["a", "b", "c"], edges) == "a -> b -> c -> a"


def test_agent_streams_and_flexselect_have_no_import_cycles():
    edges = graph()
    found = [path_through(group, edges) for group in cycles(edges)]
    assert found == [], "import cycles:\n" + "\n".join(found)
