"""Layers checked, not stated: what each unit says it may import, against what it imports.

A unit is one package of securefed (``securefed/run/``) or one top-level module
(``securefed/config.py``). Its docstring (the package's ``__init__``) says which other units
it may import, in a paragraph that starts ``May import:``: each name in double backticks
there that names a securefed module is declared, a package (``run``) with all its modules, a
module (``run.folder``) alone; anything else in the paragraph (numpy, torch) is prose.

Checked against the import graph (``import_graph``; lazy and ``TYPE_CHECKING`` imports
included):
- every import from one unit into another is declared, and every declared name is imported;
- the declared units form no circle, so the layers have an order and no arrow runs up it;
- no circle of any kind among modules (within a unit as between units).

The checks are functions of a graph, so the last tests run them on a small package written
into a temporary folder, with an upward import and a type-only circle, and see them fail.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from import_graph import ROOT, Module, build_graph, find_cycle

GRAPH = build_graph()
_DECLARED = re.compile(r"``([A-Za-z_][A-Za-z0-9_.]*)``")


def unit_of(module: str) -> str | None:
    """``securefed.run.folder`` -> ``securefed.run``; the root package is no unit."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else None


def declared_imports(graph: dict[str, Module]) -> dict[str, set[str]]:
    """Each unit's declared securefed imports (module names), from its ``May import:``."""
    root = next(iter(graph)).split(".")[0]
    out: dict[str, set[str]] = {}
    for name in sorted({u for m in graph if (u := unit_of(m))}):
        doc = ast.get_docstring(ast.parse(graph[name].path.read_text())) or ""
        paragraph = next((p for p in doc.split("\n\n") if "May import:" in p), None)
        if paragraph is None:
            raise AssertionError(f"{graph[name].path}: no 'May import:' paragraph")
        said = paragraph.split("May import:", 1)[1].split("Exports")[0]
        out[name] = set()
        for word in _DECLARED.findall(said):
            module = f"{root}.{word}"
            if module not in graph:
                raise AssertionError(f"{graph[name].path} declares ``{word}``: no such module")
            out[name].add(module)
    return out


def _permits(declared: set[str], target: str) -> bool:
    # a declared module also runs the __init__ of every package above it
    return any(
        target == d or target.startswith(d + ".") or d.startswith(target + ".") for d in declared
    )


def undeclared_imports(graph: dict[str, Module]) -> list[str]:
    """Every import from one unit into another that the importer's unit does not declare."""
    declared = declared_imports(graph)
    out = []
    for name, mod in sorted(graph.items()):
        unit = unit_of(name)
        for target in sorted(mod.all_imports):
            other = unit_of(target)
            if unit and other and other != unit and not _permits(declared[unit], target):
                out.append(f"{name} -> {target}")
    return out


def unused_declarations(graph: dict[str, Module]) -> list[str]:
    """Declared names that no module of the unit imports (a list that drifted)."""
    used: dict[str, set[str]] = {}
    for name, mod in graph.items():
        if unit := unit_of(name):
            used.setdefault(unit, set()).update(mod.all_imports)
    return [
        f"{unit} declares {d}"
        for unit, declared in sorted(declared_imports(graph).items())
        for d in sorted(declared)
        if not any(t == d or t.startswith(d + ".") for t in used[unit])
    ]


def declared_circle(graph: dict[str, Module]) -> list[str] | None:
    """A circle among the declared units: two layers that may each import the other."""
    declared = declared_imports(graph)
    return find_cycle({u: {unit_of(d) for d in ds} - {u} for u, ds in declared.items()})


def unit_circle(graph: dict[str, Module]) -> list[str] | None:
    """A circle among the units as the code imports them (an arrow that runs up)."""
    units: dict[str, set[str]] = {}
    for name, mod in graph.items():
        if unit := unit_of(name):
            others = {unit_of(t) for t in mod.all_imports} - {unit, None}
            units.setdefault(unit, set()).update(others)
    return find_cycle(units)


def module_circle(graph: dict[str, Module]) -> list[str] | None:
    return find_cycle({name: mod.all_imports for name, mod in graph.items()})


def test_every_import_between_units_is_declared():
    assert not undeclared_imports(GRAPH), "\n".join(undeclared_imports(GRAPH))


def test_every_declared_import_is_made():
    assert not unused_declarations(GRAPH), "\n".join(unused_declarations(GRAPH))


def test_the_declared_layers_have_an_order():
    assert declared_circle(GRAPH) is None, " -> ".join(declared_circle(GRAPH) or [])


def test_no_arrow_runs_up_and_no_circle_of_any_kind():
    assert unit_circle(GRAPH) is None, " -> ".join(unit_circle(GRAPH) or [])
    assert module_circle(GRAPH) is None, " -> ".join(module_circle(GRAPH) or [])


def test_the_layers_keep_their_design_order():
    """DESIGN.md section 2: cli on top, config and errors at the bottom, secagg beside them
    (numpy and bytes only)."""
    declared = declared_imports(GRAPH)
    assert not any("securefed.cli" in ds for ds in declared.values())
    for low in ("securefed.errors", "securefed.seeding"):
        assert declared[low] == set(), low
    assert declared["securefed.secagg"] == {"securefed.errors"}


# -- the checks fail where they must: a small package with the faults they look for ---------


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return build_graph(root)


LAYERED = {
    "__init__.py": "",
    "errors.py": '"""Errors.\n\nMay import: the standard library.\n"""\n',
    "low/__init__.py": '"""Low.\n\nMay import: ``errors``.\nExports nothing.\n"""\n',
    "low/a.py": '"""A."""\nfrom pkg.errors import E\nfrom pkg.low import b\n',
    "low/b.py": '"""B."""\n',
    "high/__init__.py": '"""High.\n\nMay import: ``low``, ``errors``.\nExports nothing.\n"""\n',
    "high/c.py": '"""C."""\nfrom pkg.low.a import A\nfrom pkg.errors import E\n',
}


def test_a_layered_package_passes(tmp_path):
    graph = _package(tmp_path, LAYERED)
    assert not undeclared_imports(graph) and not unused_declarations(graph)
    assert declared_circle(graph) is None and unit_circle(graph) is None
    assert module_circle(graph) is None


def test_an_upward_import_fails(tmp_path):
    upward = "from pkg.high.c import C\n"
    graph = _package(tmp_path, {**LAYERED, "low/b.py": '"""B."""\n' + upward})
    assert undeclared_imports(graph) == ["pkg.low.b -> pkg.high", "pkg.low.b -> pkg.high.c"]
    assert unit_circle(graph) == ["pkg.high", "pkg.low", "pkg.high"]
    # declaring it does not help: the layers then have no order
    declares_up = '"""Low.\n\nMay import: ``errors``, ``high``.\n"""\n'
    graph = _package(tmp_path, {**LAYERED, "low/b.py": upward, "low/__init__.py": declares_up})
    assert not undeclared_imports(graph)
    assert declared_circle(graph) == ["pkg.high", "pkg.low", "pkg.high"]


def test_a_type_checking_circle_fails(tmp_path):
    typing_back = (
        '"""B."""\nfrom typing import TYPE_CHECKING\n\n'
        "if TYPE_CHECKING:\n    from pkg.low.a import A\n"
    )
    graph = _package(tmp_path, {**LAYERED, "low/b.py": typing_back})
    assert graph["pkg.low.b"].typing_imports == {"pkg.low.a"}
    assert graph["pkg.low.b"].imports == set()
    assert module_circle(graph) == ["pkg.low.a", "pkg.low.b", "pkg.low.a"]


def test_an_unused_or_unknown_declaration_fails(tmp_path):
    stale = '"""High.\n\nMay import: ``low``, ``errors``.\n"""\n'
    graph = _package(tmp_path, {**LAYERED, "high/c.py": "from pkg.low.a import A\n"})
    assert unused_declarations(graph) == ["pkg.high declares pkg.errors"]
    graph = _package(tmp_path, {**LAYERED, "high/__init__.py": stale.replace("low", "lo")})
    with pytest.raises(AssertionError, match="declares ``lo``: no such module"):
        declared_imports(graph)


def test_the_real_graph_is_read_from_securefed():
    assert GRAPH["securefed.run.federation"].path.is_relative_to(ROOT)
    assert "securefed.run.folder" in GRAPH["securefed.run.federation"].imports
