"""The package's shape, read from the source with ``ast`` (no module is imported).

- No import cycle among securefed's modules. Every import that runs counts as an edge,
  function-level (lazy) ones included; only ``if TYPE_CHECKING:`` blocks are left out, since
  they never run.
- A function-level import of a securefed module exists only to keep a heavy dependency out of
  a light command, and says so: ``# lazy: <why>`` on its line.
- ``secagg`` never reaches torch, transformers, peft, opacus or flwr, directly or through
  another securefed module.
- At most 8 modules at the top level; none over 400 lines; every package's ``__init__`` has a
  docstring saying what it is, what it may import and what it exports.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "securefed"
HEAVY = ("torch", "transformers", "peft", "opacus", "flwr")
LAZY_MARK = "# lazy:"


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str] = field(default_factory=set)  # securefed modules, every edge that runs
    external: set[str] = field(default_factory=set)  # top-level names of other packages
    unmarked_lazy: list[str] = field(default_factory=list)  # "line N: import"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, package: str) -> list[tuple[ast.stmt, list[str], bool]]:
    """(node, imported names, inside a function) for every import that can run.

    ``import a.b`` gives ``a.b``; ``from a import b, c`` gives ``a.b`` and ``a.c`` (each a
    submodule or a name defined in ``a``; ``_graph`` tells them apart).
    """
    out: list[tuple[ast.stmt, list[str], bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    visit(stmt, in_function)
                continue
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                out.append((child, [a.name for a in child.names], in_function))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                out.append((child, [f"{base}.{a.name}" for a in child.names], in_function))
            visit(child, nested)

    visit(tree, False)
    return out


def _targets(name: str, modules: dict[str, Module], importer: str) -> set[str]:
    """The securefed modules that importing ``name`` runs: the deepest module it names and the
    packages above it -- except the importer's own packages, which are always initialised
    before any of their submodules (``from securefed.secagg import crypto`` inside secagg
    needs ``crypto``, not the rest of ``secagg/__init__``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]  # ``from a import Name``: Name is defined in ``a``
    if not name:
        return set()
    own = {importer.rsplit(".", i)[0] for i in range(1, importer.count(".") + 1)}
    parts = name.split(".")
    chain = {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
    if name in own:  # ``from own_package import Name``: that really needs its __init__
        return {name}
    return {m for m in chain if m in modules and m not in own and m != importer}


def _graph() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted(ROOT.rglob("*.py")):
        modules[_module_name(path)] = Module(_module_name(path), path)
    for mod in modules.values():
        source = mod.path.read_text()
        lines = source.splitlines()
        package = mod.name if mod.path.name == "__init__.py" else mod.name.rsplit(".", 1)[0]
        for node, names, in_function in _imports(ast.parse(source), package):
            if not names[0].startswith("securefed"):
                mod.external.update(n.split(".")[0] for n in names)
                continue
            for name in names:
                mod.imports |= _targets(name, modules, mod.name)
            statement = "\n".join(lines[node.lineno - 1 : node.end_lineno])  # formatters wrap
            if in_function and LAZY_MARK not in statement:
                mod.unmarked_lazy.append(f"line {node.lineno}: {names[0]}")
    return modules


GRAPH = _graph()


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None; iterative DFS."""
    colour: dict[str, int] = {}  # 1: on the stack, 2: done
    for start in sorted(graph):
        if start in colour:
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        colour[start] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                colour[node] = 2
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop()
            if colour.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in colour:
                colour[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph.get(nxt, ()))))
    return None


def test_the_import_graph_has_no_cycle():
    graph = {name: mod.imports for name, mod in GRAPH.items()}
    # the graph is built from the source: sanity-check it saw real edges
    assert "securefed.run.folder" in graph["securefed.run.federation"]
    assert "securefed.secagg.state" in graph["securefed.secagg.advertise"]
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_every_lazy_import_says_why():
    unmarked = {m.name: m.unmarked_lazy for m in GRAPH.values() if m.unmarked_lazy}
    assert not unmarked, f"function-level imports without '{LAZY_MARK} <why>': {unmarked}"


def _reachable(start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in GRAPH[todo.pop()].imports:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_secagg_reaches_no_heavy_dependency():
    secagg = [name for name in GRAPH if name.startswith("securefed.secagg")]
    for name in secagg:
        for reached in _reachable(name):
            heavy = GRAPH[reached].external & set(HEAVY)
            assert not heavy, f"{name} reaches {reached}, which imports {sorted(heavy)}"
            # and secagg stays numpy + bytes: it reaches no other securefed package but errors
            assert reached.startswith("securefed.secagg") or reached in (
                "securefed",
                "securefed.errors",
            ), f"{name} reaches {reached}"


def test_the_heavy_dependency_check_sees_heavy_imports():
    assert "torch" in GRAPH["securefed.model.training"].external
    assert "flwr" in GRAPH["securefed.flower.wire"].external


def test_at_most_eight_top_level_modules():
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= 8, top


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: _module_name(p))
def test_no_module_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400


@pytest.mark.parametrize(
    "init", sorted(p for p in ROOT.rglob("__init__.py") if p.parent != ROOT), ids=str
)
def test_each_package_says_what_it_is_may_import_and_exports(init):
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    assert doc, f"{init} has no docstring"
    assert "May import:" in doc and "Exports" in doc, f"{init}: say what it may import, exports"
