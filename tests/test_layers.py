"""The layers, checked on the import graph (every import, also under TYPE_CHECKING or in
a function): no import loops; endpoints call services, services call stores; booking's
nouns sit at the bottom; the two services share only machiai."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("booking", "waitroom", "machiai")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported(module: str, path: Path) -> Iterator[str]:
    """Project modules ``module`` imports, wherever the import statement stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from a.b import c" imports the module a.b.c when there is one, else a.b.
            names = [f"{base}.{alias.name}" for alias in node.names]
            names = [n if n in MODULES else base for n in names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name


GRAPH = {module: set(_imported(module, path)) for module, path in MODULES.items()}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _offenders(importer: str, forbidden: str) -> list[str]:
    return sorted(
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        if _within(m, importer)
        for d in deps
        if _within(d, forbidden)
    )


def test_the_graph_sees_the_imports() -> None:
    """The checks below are only as good as this graph: it must see real edges."""
    assert "booking.store.pg" in GRAPH["booking.store.pg_confirm"]
    assert "booking.services.context" in GRAPH["booking.services.hold"]
    assert "machiai.tokens" in GRAPH["booking.services.sessions"]
    assert len(MODULES) > 60


def test_no_import_loops() -> None:
    """Tarjan's strongly connected components: any component of two or more modules is a
    loop (a loop hidden behind TYPE_CHECKING counts too)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in GRAPH[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert loops == []


def test_endpoints_call_services_not_stores() -> None:
    assert _offenders("booking.api", "booking.store") == []
    assert _offenders("booking.pages", "booking.store") == []
    assert _offenders("booking.console", "booking.store") == []
    assert _offenders("booking.api", "booking.lua") == []
    assert _offenders("booking.http", "booking.store") == []
    # The waitroom's web layer may read the shape of an event id (waitroom.store.keys),
    # never talk to Redis or Postgres itself.
    assert _offenders("waitroom.web", "waitroom.store.redis_store") == []
    assert _offenders("waitroom.web", "waitroom.store.pg_store") == []


def test_services_and_stores_know_nothing_of_the_web() -> None:
    for layer in ("booking.services", "booking.store", "waitroom.services", "waitroom.store"):
        for web in (
            "booking.api", "booking.pages", "booking.http", "booking.app",
            "waitroom.web", "waitroom.app",
        ):  # fmt: skip
            assert _offenders(layer, web) == []
    assert _offenders("booking.store", "booking.services") == []
    assert _offenders("waitroom.store", "waitroom.services") == []
    below_the_web = ("booking.services", "booking.store", "waitroom.services", "waitroom.store")
    starlette = sorted(
        m
        for m, path in MODULES.items()
        if m.startswith(below_the_web) and "starlette" in path.read_text(encoding="utf-8")
    )
    assert starlette == []


def test_booking_nouns_are_the_bottom_and_the_services_share_only_machiai() -> None:
    assert {d for d in GRAPH["booking.domain"] if _within(d, "booking")} == set()
    assert _offenders("booking", "waitroom") == []
    assert _offenders("waitroom", "booking") == []
    assert _offenders("machiai", "booking") == [] or all(
        # The supervisor and the CLI run both services; nothing else in machiai knows them.
        line.split(" imports ")[0] in {"machiai.cli", "machiai.runner", "machiai.seed_demo"}
        for line in _offenders("machiai", "booking")
    )
