"""The import contract of src/: sdk <- runner <- devtools, and no import cycle.

An AST scan of every module (imports anywhere in a file count, also inside functions, and so do
`importlib.import_module("...")` calls with a literal name): the SDK imports nothing of the
Runner or the developer tools except the one documented shim edge, the Runner imports nothing of
the developer tools, and the module graph has no cycle.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
SDK, RUNNER, DEVTOOLS = "procvision_algorithm_sdk", "procvision_runner", "procvision_devtools"

# The one edge from the SDK up: the compat shim procvision_algorithm_sdk.cli forwards the seed
# CLI API (validate, run, main) to the developer tools, lazily.
SHIM_EDGES = {(f"{SDK}.cli", DEVTOOLS)}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module under src/ by dotted name."""
    return {
        _module_name(p): p
        for p in sorted(SRC.rglob("*.py"))
        if "__pycache__" not in p.parts and not any(x.endswith(".egg-info") for x in p.parts)
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk without the bodies of `if TYPE_CHECKING:` (never executed)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


def _resolve(name: str, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return name
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of src/ (and any other top-level names) that module `name` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module or "", node.level, name, is_package)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    found.discard(name)
    return found


# Parsing all of src/ is most of this file's time and src/ does not change during a run: one
# scan serves every test (none of them changes the graph it is given).
@functools.cache
def graph() -> dict[str, set[str]]:
    """Module -> imported modules, for every module under src/."""
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _inside(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _edges_into(top: str, sources: str) -> list[tuple[str, str]]:
    return sorted(
        (src, dst)
        for src, targets in graph().items()
        if _top(src) == sources
        for dst in targets
        if _top(dst) == top
    )


def test_the_scan_sees_the_three_packages() -> None:
    names = set(modules())
    assert {SDK, f"{SDK}.adapter", RUNNER, f"{RUNNER}.cli", DEVTOOLS, f"{DEVTOOLS}.main"} <= names
    edges = graph()
    # imports inside functions count, and relative imports resolve to modules
    assert f"{SDK}.contract" in edges[f"{DEVTOOLS}._project"]
    assert any(_top(dst) == RUNNER for dst in edges[f"{DEVTOOLS}._runner_session"])


@pytest.mark.slow
def test_the_sdk_imports_nothing_of_the_runner_or_the_devtools() -> None:
    bad = [
        edge
        for top in (RUNNER, DEVTOOLS)
        for edge in _edges_into(top, SDK)
        if not any(_inside(edge[0], a) and _inside(edge[1], b) for a, b in SHIM_EDGES)
    ]
    assert bad == [], f"the SDK must not import the station side: {bad}"


def test_the_only_sdk_to_devtools_edge_is_the_shim() -> None:
    assert set(_edges_into(DEVTOOLS, SDK)) == SHIM_EDGES


@pytest.mark.slow
def test_the_runner_imports_nothing_of_the_devtools() -> None:
    bad = _edges_into(DEVTOOLS, RUNNER) + [
        (src, dst) for src, dst in _edges_into(SDK, RUNNER) if _inside(dst, f"{SDK}.cli")
    ]
    assert bad == [], f"the Runner must not import the developer tools: {bad}"


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in `edges` (as a path a -> ... -> a), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(edges):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(edges.get(start, ())))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt) and nxt in edges:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges[nxt])))
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
