"""The import graph runs one way: run_matrix -> bench -> methods/models/data, with no cycles.

Read from the source (ast), so a new module is checked without anyone listing it.
Imports inside functions are deliberate late imports (torch kept out of the grid
loader) and are checked for direction only.
"""
import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("bench", "methods", "models", "data")
LOWER = {"methods": {"models"}, "models": set(), "data": set()}  # what each lower layer may import


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(module-level imports, all imports) of one file, as absolute module names of this project."""
    tree = ast.parse(path.read_text())
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top, every = set(), set()

    def record(target: str, at_top: bool) -> None:
        if target.split(".")[0] in PACKAGES:
            every.add(target)
            if at_top:
                top.add(target)

    def visit(node: ast.AST, at_top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = at_top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    record(alias.name, at_top)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                record(base, at_top)
            visit(child, nested)

    visit(tree, True)
    return top, every


def _graph() -> dict[str, tuple[set[str], set[str]]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    return {_module_name(p): _imports(p) for p in files}


def test_lower_layers_never_import_higher_ones():
    for module, (_, every) in _graph().items():
        layer = module.split(".")[0]
        if layer == "bench":
            continue
        allowed = {layer} | LOWER[layer]
        wrong = sorted(t for t in every if t.split(".")[0] not in allowed)
        assert not wrong, f"{module} imports {wrong}"


def test_no_import_cycles_between_modules():
    graph = _graph()
    names = set(graph)

    def resolve(target: str) -> str | None:
        while target and target not in names:
            target = target.rpartition(".")[0]
        return target or None

    edges = {m: {r for t in top if (r := resolve(t)) and r != m and not m.startswith(r + ".")}
             for m, (top, _) in graph.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                walk(n)
        path.pop()
        state[m] = 2

    for module in sorted(edges):
        if module not in state:
            walk(module)
