"""The package's shape, read from its source: no import circle, the drivers in the store layer,
and mongomock's private parts in one module.

Imports are read with :mod:`ast` (every ``import`` and ``from ... import`` anywhere in a module,
functions included), so a circle hidden behind an import inside a function counts too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "spaceone_job"
# The modules that may talk to a database driver (connect, the two stores, the model).
STORE = "spaceone_job.store"
INTERNALS = "spaceone_job.store.mongomock_internals"
# How a collection of mongomock's holds its documents, and its private functions.
MONGOMOCK_PRIVATE = (
    "._store.documents",
    "._store._documents",
    "._iter_documents",
    "_PIPELINE_HANDLERS",
    "_accumulate_group",
    "_parse_expression",
    "_get_compare_type",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> Iterator[tuple[str, list[str]]]:
    """Each imported module of ``path``, with the names taken from it."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                base = module_name(path).rsplit(".", node.level)[0]
                yield f"{base}.{node.module}", [alias.name for alias in node.names]
            else:
                yield node.module, [alias.name for alias in node.names]


def own_imports(name: str) -> set[str]:
    """The package's modules that module ``name`` imports (``from pkg import module`` too)."""
    found = set()
    for module, names in imports(MODULES[name]):
        for candidate in (module, *(f"{module}.{n}" for n in names)):
            if candidate in MODULES and candidate != name:
                found.add(candidate)
    return found


def test_no_module_of_the_package_imports_itself_through_others() -> None:
    graph = {name: own_imports(name) for name in MODULES}
    circles = []

    def visit(name: str, path: list[str]) -> None:
        for nxt in sorted(graph[name]):
            if nxt in path:
                circles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(name)

    done: set[str] = set()
    for name in MODULES:
        visit(name, [name])
    assert not circles, [" -> ".join(circle) for circle in circles]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_the_store_layer_imports_a_database_driver(name: str) -> None:
    drivers = {module.split(".")[0] for module, _ in imports(MODULES[name])} & {
        "pymongo",
        "mongoengine",
        "mongomock",
    }
    if not name.startswith(f"{STORE}."):
        assert not drivers, f"{name} imports {drivers}"


@pytest.mark.parametrize("name", sorted(set(MODULES) - {INTERNALS}))
def test_mongomocks_private_parts_are_named_in_one_module_only(name: str) -> None:
    used = {
        module for module, names in imports(MODULES[name]) if module.split(".")[0] == "mongomock"
    }
    assert used <= {"mongomock"}, f"{name} imports {used}: name them in {INTERNALS}"
    source = MODULES[name].read_text()
    for private in MONGOMOCK_PRIVATE:
        assert private not in source, f"{name} reaches into mongomock ({private})"


def test_the_service_layers_depend_on_the_store_protocol_not_a_store() -> None:
    stores = {f"{STORE}.mongo", f"{STORE}.embedded", INTERNALS}
    for name in MODULES:
        if name.startswith(f"{STORE}."):
            continue
        assert not own_imports(name) & stores, f"{name} imports a store itself"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(f"{STORE}.")))
def test_the_store_raises_its_own_exceptions_not_the_apis(name: str) -> None:
    assert "spaceone_job.errors" not in own_imports(name), f"{name} imports the API's errors"


TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.py")), ids=lambda p: p.name)
def test_no_test_module_imports_another(path: Path) -> None:
    imported = {module for module, _ in imports(path)}
    others = {m for m in imported if m.split(".")[-1].startswith("test_")}
    assert not others, f"{path.name} imports {others}: share it through tests/support"
