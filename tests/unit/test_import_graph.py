"""The package's import graph, read from the source: no import circle (function-local imports count, imports under
``if TYPE_CHECKING:`` do not); each layer imports only the layers below it, not even for types (the protocol
below the hook, the hook below the operator); and the Zoho protocol (``zoho/``) and the emulator (``testing/``)
never import Airflow, directly or through another module of the package, nor each other."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "airflow_provider_zohocrm"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE
#: Layers that must run without Airflow installed.
AIRFLOW_FREE = (f"{PACKAGE}.zoho", f"{PACKAGE}.testing")
#: Modules of those layers that run only as a process of their own with Airflow (started by module name, never
#: imported by another module): the fork server behind ``testing.airflow_cli.dags_test``.
AIRFLOW_PROCESS_ENTRY_POINTS = {f"{PACKAGE}.testing.airflow_forkserver_main"}
#: Each part of the package and its layer: a module may import its own layer and those below. ``zoho`` (the
#: protocol) and ``testing`` (the emulator) share a layer but must stay independent of each other.
LAYERS = {
    PACKAGE: 0,  # the package's __init__: version and the connection form's fields
    f"{PACKAGE}.zoho": 1,
    f"{PACKAGE}.testing": 1,
    f"{PACKAGE}.hooks": 2,
    f"{PACKAGE}.operators": 3,
    f"{PACKAGE}.workflows": 4,  # the job as a config, a TaskGroup and a DAG factory, over the operator
    f"{PACKAGE}.example_dags": 5,
    f"{PACKAGE}.__main__": 5,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, *, typing_too: bool = False) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement below ``node`` (in functions too); ``if TYPE_CHECKING:`` bodies only with
    ``typing_too``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test) and not typing_too:
            for other in child.orelse:
                yield from _imports_in(other, typing_too)
            continue
        yield from _imports_in(child, typing_too)


def _imports_in(node: ast.AST, typing_too: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    yield from _imports(node, typing_too=typing_too)


def _targets(module: str, statement: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules a statement imports: ``a.b`` for ``import a.b``; for ``from a import b``, ``a.b`` when it is a
    module of the package, else ``a``."""
    if isinstance(statement, ast.Import):
        for alias in statement.names:
            yield alias.name
        return
    base = statement.module or ""
    if statement.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(statement.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    for alias in statement.names:
        sub = f"{base}.{alias.name}"
        yield sub if sub in MODULES else base


def _graph(*, typing_too: bool = False) -> dict[str, set[str]]:
    """Module -> every module it imports (the package's and external ones), at run time or, with ``typing_too``,
    for type checking as well."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        statements = _imports(tree, typing_too=typing_too)
        graph[module] = {target for st in statements for target in _targets(module, st)}
    return graph


def _layer(module: str) -> tuple[str, int]:
    """The part of the package a module belongs to, and its layer (a module outside every part: the top)."""
    part = max((p for p in LAYERS if module == p or module.startswith(f"{p}.")), key=len)
    if part == PACKAGE and module != PACKAGE:  # a module at the package's top level, e.g. a command's helper
        return module, max(LAYERS.values())
    return part, LAYERS[part]


def _internal(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in targets if t in MODULES and t != m} for m, targets in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _parents(module: str) -> Iterator[str]:
    """The packages Python runs before ``module`` (their ``__init__``)."""
    parts = module.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


def test_the_package_has_no_import_circle() -> None:
    graph = _graph()
    assert len(graph) > 30 and f"{PACKAGE}.zoho.client" in graph  # the walk found the package
    assert _cycles(_internal(graph)) == []


def test_each_layer_imports_only_the_layers_below_it_even_for_types() -> None:
    """The hook adapts a connection to ``zoho/`` and calls down into it; nothing in ``zoho/`` knows the hook, and
    the hook knows no operator or command (a type-only import back up is still a circle of concerns)."""
    upward = []
    for module, targets in _internal(_graph(typing_too=True)).items():
        part, layer = _layer(module)
        for target in sorted(targets):
            their_part, their_layer = _layer(target)
            crossing = {part, their_part} == set(AIRFLOW_FREE)
            if their_layer > layer or crossing:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_zoho_and_the_emulator_never_import_airflow() -> None:
    graph = _graph()
    internal = _internal(graph)
    offenders: dict[str, list[str]] = {}
    for start in (m for m in MODULES if m.startswith(AIRFLOW_FREE) and m not in AIRFLOW_PROCESS_ENTRY_POINTS):
        seen: set[str] = set()
        todo = [start]
        while todo:  # everything importing ``start`` runs: its imports, theirs, and their parent packages
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            todo.extend(internal[module])
            todo.extend(p for p in _parents(module) if p in MODULES)
        via = sorted(m for m in seen if any(t == "airflow" or t.startswith("airflow.") for t in graph[m]))
        if via:
            offenders[start] = via
    assert offenders == {}


def test_the_airflow_process_entry_points_are_imported_by_no_module() -> None:
    """What lets them import Airflow: nothing Airflow-free can reach them through an import."""
    graph = _graph()
    internal = _internal(graph)
    assert set(MODULES) >= AIRFLOW_PROCESS_ENTRY_POINTS
    importers = {m: sorted(AIRFLOW_PROCESS_ENTRY_POINTS & set(targets)) for m, targets in internal.items()}
    assert {m: t for m, t in importers.items() if t} == {}


def test_every_import_of_the_package_names_a_module_of_this_checkout() -> None:
    """A moved or removed module leaves no import behind, in the package, its tests, scripts and benchmarks (an
    editable install of another checkout would otherwise still answer the old name)."""
    roots = [ROOT, *(ROOT.parent / d for d in ("tests", "scripts", "benchmarks"))]
    stale = []
    for path in (p for root in roots if root.is_dir() for p in sorted(root.rglob("*.py"))):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for statement in _imports(tree, typing_too=True):
            if isinstance(statement, ast.ImportFrom):
                names = [statement.module or ""] if not statement.level else []
            else:
                names = [alias.name for alias in statement.names]
            stale += [
                f"{path.relative_to(ROOT.parent)}:{statement.lineno} {name}"
                for name in names
                if (name == PACKAGE or name.startswith(f"{PACKAGE}.")) and name not in MODULES
            ]
    assert stale == []


def test_the_graph_sees_function_local_imports_and_skips_type_checking_ones() -> None:
    """The reader itself: a lazy import is an edge; an ``if TYPE_CHECKING:`` import is not."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import typed_only\nelse:\n    import at_runtime\n"
        "def f():\n    import lazy\n    if True:\n        from pkg import deep\n"
    )
    names = {alias.name for st in _imports(tree) for alias in st.names}
    assert names == {"TYPE_CHECKING", "at_runtime", "lazy", "deep"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_importing_the_package_is_cheap_and_its_public_names_load_on_first_use() -> None:
    """``__all__`` names the public API; the package's ``__init__`` imports none of it (nor Airflow) until a name is
    used, so provider discovery and the Airflow-free layers stay light. Every public name resolves."""
    import subprocess
    import sys

    code = (
        "import sys, airflow_provider_zohocrm as p;"
        "assert not [m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')], 'airflow imported';"
        "assert not [m for m in sys.modules if m.startswith('airflow_provider_zohocrm.')], 'a submodule imported';"
        "missing = [n for n in p.__all__ if getattr(p, n, None) is None];"
        "assert not missing, missing;"
        "print(sorted(p.__all__))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in (
        "ZohoCRMHook",
        "UnblockEmailOperator",
        "UnblockJobConfig",
        "ZohoUnblockTaskGroup",
        "unblock_bounced_emails_dag",
        "ZohoCRMEmulator",
    ):
        assert f"'{name}'" in done.stdout
