"""The package's shape, read from the source with ``ast`` (no module is imported).

- No import circle of any kind among securefed's modules: every import counts as an edge,
  function-level (lazy) ones and those inside ``if TYPE_CHECKING:`` included (a type-only
  import never runs, but it still ties the two modules into one unit).
- A function-level import of a securefed module exists only to keep a heavy dependency out of
  a light command, and says so: ``# lazy: <why>`` on its line.
- ``secagg`` never reaches torch, transformers, peft, opacus or flwr, directly or through
  another securefed module.
- At most 8 modules at the top level; none over 400 lines; every package's ``__init__`` has a
  docstring saying what it is, what it may import and what it exports.
"""

from __future__ import annotations

import ast

import pytest
from import_graph import LAZY_MARK, ROOT, build_graph, find_cycle, module_name

HEAVY = ("torch", "transformers", "peft", "opacus", "flwr")

GRAPH = build_graph()


def test_the_import_graph_has_no_cycle():
    graph = {name: mod.all_imports for name, mod in GRAPH.items()}
    # the graph is built from the source: sanity-check it saw real edges
    assert "securefed.run.folder" in graph["securefed.run.federation"]
    assert "securefed.secagg.state" in graph["securefed.secagg.advertise"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


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


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_module_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400


@pytest.mark.parametrize(
    "init", sorted(p for p in ROOT.rglob("__init__.py") if p.parent != ROOT), ids=str
)
def test_each_package_says_what_it_is_may_import_and_exports(init):
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    assert doc, f"{init} has no docstring"
    assert "May import:" in doc and "Exports" in doc, f"{init}: say what it may import, exports"
