"""securefed's import graph, read from the source with ``ast`` (no module is imported).

Every import that runs is an edge, function-level (lazy) ones included; the imports inside an
``if TYPE_CHECKING:`` block are kept apart (``Module.typing_imports``): they never run, but
they still tie one module to another. ``tests/test_architecture.py`` and
``tests/test_layers.py`` check the graph; ``scripts/mutation_sample.py`` reads which test
files import which module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "securefed"
LAZY_MARK = "# lazy:"


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str] = field(default_factory=set)  # securefed modules, every edge that runs
    typing_imports: set[str] = field(default_factory=set)  # inside ``if TYPE_CHECKING:``
    external: set[str] = field(default_factory=set)  # top-level names of other packages
    unmarked_lazy: list[str] = field(default_factory=list)  # "line N: import"

    @property
    def all_imports(self) -> set[str]:
        """Every securefed module this one names in an import, run or type-only."""
        return self.imports | self.typing_imports


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(tree: ast.AST, package: str) -> list[tuple[ast.stmt, list[str], bool, bool]]:
    """(node, imported names, inside a function, inside ``if TYPE_CHECKING:``) for every
    import statement.

    ``import a.b`` gives ``a.b``; ``from a import b, c`` gives ``a.b`` and ``a.c`` (each a
    submodule or a name defined in ``a``; ``targets`` tells them apart).
    """
    out: list[tuple[ast.stmt, list[str], bool, bool]] = []

    def visit(node: ast.AST, in_function: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.body:
                    visit_one(stmt, in_function, True)
                for stmt in child.orelse:
                    visit_one(stmt, in_function, typing_only)
                continue
            visit_one(child, in_function, typing_only)

    def visit_one(child: ast.AST, in_function: bool, typing_only: bool) -> None:
        nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        if isinstance(child, ast.Import):
            out.append((child, [a.name for a in child.names], in_function, typing_only))
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in child.names]
            out.append((child, names, in_function, typing_only))
        visit(child, nested, typing_only)

    visit(tree, False, False)
    return out


def targets(name: str, modules: dict[str, Module] | set[str], importer: str) -> set[str]:
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


def build_graph(root: Path = ROOT) -> dict[str, Module]:
    """Every module under ``root`` with the securefed modules it imports."""
    modules: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        modules[module_name(path, root)] = Module(module_name(path, root), path)
    for mod in modules.values():
        source = mod.path.read_text()
        lines = source.splitlines()
        package = mod.name if mod.path.name == "__init__.py" else mod.name.rsplit(".", 1)[0]
        for node, names, in_function, typing_only in imports_of(ast.parse(source), package):
            if names[0].split(".")[0] != root.name:
                if not typing_only:
                    mod.external.update(n.split(".")[0] for n in names)
                continue
            edges = mod.typing_imports if typing_only else mod.imports
            for name in names:
                edges |= targets(name, modules, mod.name)
            statement = "\n".join(lines[node.lineno - 1 : node.end_lineno])  # formatters wrap
            if in_function and LAZY_MARK not in statement:
                mod.unmarked_lazy.append(f"line {node.lineno}: {names[0]}")
    return modules


def securefed_imports_of_file(path: Path, modules: dict[str, Module]) -> set[str]:
    """The securefed modules a file outside the package (a test) imports, with their packages."""
    found: set[str] = set()
    for _, names, _, _ in imports_of(ast.parse(path.read_text()), "tests"):
        for name in names:
            if name.startswith("securefed"):
                found |= targets(name, modules, "tests")
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of nodes (first == last), or None; iterative DFS."""
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
