"""The package's layers go one way down, read from the source (every import, function-local ones too).

The command line (``lit_alpha.cli`` and ``__main__``) sits on top; below it the library, in the order
of :data:`LAYERS` (bottom first): a module may import its own package and the packages below it,
never one above. No module imports itself back through others (no cycle at module level).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lit_alpha"

#: bottom → top. Each entry is a subpackage (or top-level module) of lit_alpha.
LAYERS = [
    "errors",
    "verifiers",
    "models",
    "scoring",
    "metrics",
    "tasks",
    "sampling",
    "batch",
    "objectives",
    "training",
    "data",
    "module",
    "analysis",
    "cli",
    "__main__",
]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE) -> set[str]:
    """Every ``lit_alpha...`` module named by an import anywhere in ``path`` (relative imports resolved)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import submodule`
    modules = {module_name(p, root) for p in root.rglob("*.py")}
    # a module's own ancestor packages are initialised before it runs: importing from them is no edge
    return {m for m in found if m in modules and m != name and not name.startswith(m + ".")}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "lit_alpha"


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, root) for p in root.rglob("*.py")}


def upward_imports(root: Path = PACKAGE) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = []
    for module, targets in sorted(graph(root).items()):
        src = layer_of(module)
        for target in sorted(targets):
            dst = layer_of(target)
            if dst != "lit_alpha" and src != "lit_alpha" and rank[dst] > rank[src]:
                upward.append(f"{module} imports {target} ({src} is below {dst})")
    return upward


def test_every_package_has_a_layer():
    packages = {layer_of(m) for m in graph()} - {"lit_alpha"}
    assert packages <= set(LAYERS), f"place these in LAYERS: {sorted(packages - set(LAYERS))}"


def test_layers_go_one_way_down():
    upward = upward_imports()
    assert not upward, "\n".join(upward)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the module graph ``edges`` (as a closed path), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(graph())  # an edge into a package is an edge into its __init__
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_check_sees_function_local_and_relative_imports(tmp_path):
    """An upward import hidden in a function, or written relative, is caught (a hidden local import
    is still an import); a downward one is not."""
    root = tmp_path / "lit_alpha"
    for rel, text in {
        "__init__.py": "",
        "cli/__init__.py": "",
        "cli/commands.py": "from lit_alpha.metrics import x\n",  # down: fine
        "metrics/__init__.py": "",
        "metrics/x.py": "def f():\n    from lit_alpha.cli.commands import parse_command\n",
        "metrics/y.py": "def g():\n    from ..cli import commands\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    assert upward_imports(root) == [
        "lit_alpha.metrics.x imports lit_alpha.cli.commands (metrics is below cli)",
        "lit_alpha.metrics.y imports lit_alpha.cli (metrics is below cli)",
        "lit_alpha.metrics.y imports lit_alpha.cli.commands (metrics is below cli)",
    ]


def test_a_cycle_through_a_local_import_is_found(tmp_path):
    root = tmp_path / "lit_alpha"
    for rel, text in {
        "__init__.py": "",
        "analysis/__init__.py": "",
        "analysis/evaluate.py": "from lit_alpha.models.export import save\n",
        "models/__init__.py": "",
        "models/export.py": "def f():\n    from lit_alpha.analysis.evaluate import build\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    assert find_cycle(graph(root)) == ["lit_alpha.analysis.evaluate", "lit_alpha.models.export",
                                       "lit_alpha.analysis.evaluate"]
