"""The shape of the house, checked: the node and the conductor talk only by messages (no
import of one by the other, at any depth of a module), and no cycle runs through the
module-level imports of `helios/`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELIOS = ROOT / "helios"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Modules `path` imports (`from a import b` counts as a and as a.b)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_node_and_conductor_do_not_import_each_other() -> None:
    wrong = []
    for side, other in (("node", "conductor"), ("conductor", "node")):
        for path in sorted((HELIOS / side).rglob("*.py")):
            for name in _imports(path, top_level_only=False):
                if name == f"helios.{other}" or name.startswith(f"helios.{other}."):
                    wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, wrong


def test_no_import_cycles_in_helios() -> None:
    files = {_module(p): p for p in HELIOS.rglob("*.py")}
    graph = {m: {n for n in _imports(p, top_level_only=True) if n in files and n != m}
             for m, p in files.items()}
    # depth-first search for a back edge; the path to it is the cycle
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return [*path[path.index(n):], m, n] if n in path else [m, n]
            if n not in state:
                found = visit(n, [*path, m])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m, [])
            assert cycle is None, " -> ".join(cycle)
