"""The shape the code promises: what runs in a cell imports only the standard library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import compat.cell

CELL = Path(compat.cell.__file__).parent
# The target's environment brings pytest (the plugin is a pytest plugin); nothing else is ours to assume.
ALLOWED = set(sys.stdlib_module_names) | {"pytest", "compat"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            # Relative imports must stay inside compat.cell.
            assert node.level == 1, f"{path.name} reaches outside compat.cell: {'.' * node.level}{node.module}"
    return roots


def test_the_cell_package_imports_only_the_standard_library():
    modules = sorted(CELL.glob("*.py"))
    assert {p.name for p in modules} >= {"__init__.py", "entry.py", "plugin.py", "protocol.py"}
    for path in modules:
        outside = imported_roots(path) - ALLOWED
        assert not outside, f"{path.name} imports {sorted(outside)}"
    # compat.* imports from inside the package are relative only.
    for path in modules:
        tree = ast.parse(path.read_text())
        absolute = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
        assert not [m for m in absolute if m and m.startswith("compat")], path.name


def test_the_check_catches_a_third_party_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import msgspec\nfrom docker import errors\nfrom .. import runners\n")
    with pytest.raises(AssertionError, match=r"reaches outside compat\.cell"):
        imported_roots(bad)
    bad.write_text("import msgspec\nfrom docker import errors\n")
    assert imported_roots(bad) - ALLOWED == {"msgspec", "docker"}


def _compat_imports() -> dict[str, set[str]]:
    """compat module -> the compat modules it imports, at module level or inside functions."""
    root = CELL.parent
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = ".".join(parts[:-1])
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                found.add(target)
                # `from pkg import name` may import a submodule: count it when it is one.
                found.update(f"{target}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[module] = {m for m in found if m.startswith("compat")}
    return graph


def _resolve(name: str, graph: dict[str, set[str]]) -> str | None:
    return name if name in graph else None


def test_compat_has_no_import_cycles():
    graph = _compat_imports()
    assert {"compat.cli", "compat.runners.docker", "compat.results.raw", "compat.cell.entry"} <= set(graph)
    edges = {m: {r for t in targets if (r := _resolve(t, graph)) and r != m} for m, targets in graph.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of the flow.
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in edges.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(edges.get(module, ())):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, module, nxt])
            if nxt not in state:
                visit(nxt, [*path, module])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])


# The flow, lowest first: a module imports only from its own layer or a lower one (docs/DESIGN.md,
# "Layout"). Above the cell, only the runners drive it; everything else reads its protocol.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("compat", "compat.errors", "compat.hints"),
    ("compat.matrix", "compat.paths"),
    ("compat.cell",),
    ("compat.results",),
    ("compat.runners",),
    ("compat.report", "compat.ci", "compat.triage", "compat.repro", "compat.doctor", "compat.init"),
    ("compat.cli", "compat.nox", "compat.__main__"),
)
CELL_DRIVERS = ("compat.runners",)


def layer_of(module: str) -> int:
    best = -1, -1  # (length of the matching prefix, layer)
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = len(prefix), rank
    assert best[1] >= 0, f"{module} is in no layer of LAYERS: place it"
    return best[1]


def direction_violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(t for t in targets if t in graph and t != module):
            if layer_of(target) > layer_of(module):
                found.append(f"{module} imports {target}, a later step of the flow")
            in_cell = target.startswith("compat.cell.") and not module.startswith("compat.cell")
            driver = module.startswith(CELL_DRIVERS)
            if in_cell and not driver and target != "compat.cell.protocol":
                found.append(f"{module} imports {target}: outside the runners, only compat.cell.protocol")
    return found


def test_imports_go_one_way_down_the_flow():
    graph = _compat_imports()
    assert direction_violations(graph) == []


def test_the_direction_check_catches_an_import_up_the_flow():
    graph = {
        "compat.results.raw": {"compat.runners.base"},
        "compat.runners.base": set(),
        "compat.report.build": {"compat.cell.entry"},
        "compat.cell.entry": set(),
    }
    assert direction_violations(graph) == [
        "compat.report.build imports compat.cell.entry: outside the runners, only compat.cell.protocol",
        "compat.results.raw imports compat.runners.base, a later step of the flow",
    ]
