"""No import circle in src/: each module's imports, read with ast, form no cycle.

An import names a module when it is one (`from grok_proxy.routes import chat` is
grok_proxy.routes.chat), else the package it is taken from, as import-linter counts them.
Imports under `if TYPE_CHECKING:` never run, so they do not count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).parents[2] / "src"


def modules() -> dict[str, Path]:
    """Every module under src/ by its dotted name (a package by its own name)."""
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
    return name == "TYPE_CHECKING"


def imports(body: list[ast.stmt], deferred: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run: at module level, and inside functions if `deferred`."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _type_checking(node.test):
            yield from imports(node.orelse, deferred)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if deferred or isinstance(node, ast.ClassDef):
                yield from imports(node.body, deferred)
        else:
            for child in ("body", "orelse", "finalbody", "handlers", "cases"):
                for block in getattr(node, child, []):
                    yield from imports(
                        [block] if isinstance(block, ast.stmt) else block.body, deferred
                    )


def import_graph(deferred: bool) -> dict[str, set[str]]:
    """Which of src/'s modules each one imports."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in imports(ast.parse(path.read_text()).body, deferred):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
        graph[name] = {target for target in targets if target in known and target != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_finder_sees_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_at_module_level() -> None:
    assert circles(import_graph(deferred=False)) == []


def test_no_import_circle_hidden_in_a_function() -> None:
    """Imports inside functions count too: a deferred circle is still a circle."""
    assert circles(import_graph(deferred=True)) == []


# The sharing plane (teams and its console) and the entry points that start it.
SHARING = ("grok_proxy.teams", "grok_proxy.console")
COMPOSITION_ROOTS = {"grok_proxy.app", "grok_proxy.cli"}


def test_only_the_composition_root_imports_the_teams_package() -> None:
    """The call path, the relays and the serving layer take policies; they import none."""
    graph = import_graph(deferred=True)
    importers = {
        module
        for module, imported in graph.items()
        if not module.startswith(SHARING)
        and any(name.startswith("grok_proxy.teams") for name in imported)
    }
    assert importers <= COMPOSITION_ROOTS, sorted(importers - COMPOSITION_ROOTS)


def test_the_call_path_imports_no_web_framework() -> None:
    """calls/ speaks plain ASGI values: any adapter (HTTP, WebSocket, gRPC) can use it."""
    frameworks = ("starlette", "fastapi", "grpc", "websockets")
    found = []
    for name, path in modules().items():
        if not name.startswith("grok_proxy.calls."):
            continue
        for node in imports(ast.parse(path.read_text()).body, deferred=True):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            found += [f"{name}: {n}" for n in names if n.split(".")[0] in frameworks]
    assert found == []


def test_the_call_path_imports_no_observability_and_no_server() -> None:
    """Metrics, logs and traces are plugged in by the composition root (observers, hooks),
    and so is the worker's shutdown (its Drain's stream set): the call path imports none
    of them, nor the serving layer above it."""
    graph = import_graph(deferred=True)
    found = sorted(
        f"{module}: {name}"
        for module, imported in graph.items()
        if module.startswith("grok_proxy.calls.")
        for name in imported
        if name.startswith(("grok_proxy.observability", "grok_proxy.serving"))
    )
    assert found == []
