"""The benchmark tool's shape: package imports form no cycle and none is hidden in a
function body; the internal probes stay apart; run_sync lets the real error through."""
import ast
import pathlib

import pytest

from bench import etcdapi

BENCH = pathlib.Path(__file__).resolve().parents[3] / "bench"


def _package_imports(path: pathlib.Path):
    """-> [(imported bench module, at module level?)] for one file of the tool."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            out += [(n.split(".")[0], id(node) in top) for n in names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bench."):
            out.append((node.module.split(".")[1], id(node) in top))
    return out


def test_tool_imports_are_acyclic_and_at_module_level():
    tool = {p.stem: p for p in BENCH.glob("*.py")}
    graph = {}
    for name, path in tool.items():
        imps = _package_imports(path)
        lazy = [m for m, at_top in imps if not at_top and m in tool]
        assert not lazy, f"bench/{name}.py imports {lazy} inside a function"
        graph[name] = {m for m, _ in imps if m in tool and m != "__init__"}
    done, stack = set(), []

    def visit(n):
        assert n not in stack, "import cycle: " + " -> ".join(stack[stack.index(n):] + [n])
        if n in done:
            return
        stack.append(n)
        for m in graph.get(n, ()):
            visit(m)
        stack.pop()
        done.add(n)

    for n in graph:
        visit(n)


def test_internal_probes_are_not_imported_by_the_tool():
    for path in BENCH.glob("*.py"):
        assert "probes" not in {m for m, _ in _package_imports(path)}, path


def test_run_sync_raises_the_coroutines_own_error():
    async def needs_missing_module():
        import kvcore_no_such_module  # noqa: F401
    with pytest.raises(ModuleNotFoundError, match="kvcore_no_such_module"):
        etcdapi.run_sync(needs_missing_module(), timeout=5)
