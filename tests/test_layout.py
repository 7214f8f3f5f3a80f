"""The package's layout, read from the source: the import graph of src/molting has no cycles (imports inside
functions included), only the CLI imports the CLI, and no module or template explains itself by the
project's history ("phase 7", "issue 3") instead of by the reason."""

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "molting"
ENTRY_POINT = "molting.__main__"  # `python -m molting` is the CLI
HISTORY = re.compile(r"\bphase ?\d+\b|\bthe (lab )?logs\b|\bissue \d+\b|\bsection \d+\b", re.IGNORECASE)


def _modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package (a package is its __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module that `name` (a module, or a name inside one) belongs to."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module → the molting modules it imports, at the top or inside a function."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(_resolve(a.name, modules) for a in node.names if a.name.split(".")[0] == "molting")
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..y import z
                    parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parent + ([base] if base else []))
                if base.split(".")[0] != "molting":
                    continue
                for alias in node.names:  # `from molting.evaluate import rubric` imports a submodule
                    targets.add(_resolve(f"{base}.{alias.name}", modules))
        graph[module] = {t for t in targets if t and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, …, a], or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph.get(module, ())):
            if target in on_path:
                return path[path.index(target) :] + [target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "molting.train.sft" in graph["molting.evaluate.server_answers"]  # imported in a function
    assert "molting.evaluate.embedding_similarity" in graph["molting.evaluate.run"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_only_the_cli_imports_the_cli():
    offenders = {
        module: sorted(t for t in targets if t == "molting.cli" or t.startswith("molting.cli."))
        for module, targets in import_graph().items()
        if module != ENTRY_POINT and module != "molting.cli" and not module.startswith("molting.cli.")
    }
    offenders = {m: t for m, t in offenders.items() if t}
    assert not offenders, f"library modules importing the CLI: {offenders}"


def test_code_and_templates_give_reasons_not_history():
    files = sorted(PACKAGE.rglob("*.py")) + sorted((PACKAGE / "report" / "templates").iterdir())
    files += sorted((PACKAGE / "card" / "project_template").iterdir())
    hits = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if HISTORY.search(line)
    ]
    assert not hits, "say the reason, not the history:\n" + "\n".join(hits)
