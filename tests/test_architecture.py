"""The package's import structure: no import cycle inside `segadapter` (module-level or deferred,
i.e. any `import` statement anywhere in a module), and training (`engine`) and evaluation
(`evaluation`) do not import each other. Read statically from the sources, so it also sees
imports inside functions."""
import ast
from pathlib import Path

import segadapter

ROOT = Path(segadapter.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Package modules `path` imports (`from . import x` counts as importing x if x is a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                found.add(t if t in modules else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    # importing a.b.c also runs a and a.b: only edges to our own modules, minus self
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    files = [p for p in ROOT.rglob("*.py")]
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def _package_init_edges_only_downwards(graph):
    # `pkg/__init__` re-exporting its own submodules is not a cycle through the package
    return {n: {m for m in deps if not (n.startswith(m + ".") and m != n)} for n, deps in graph.items()}


def test_no_import_cycle_inside_the_package():
    cycle = _cycle(_package_init_edges_only_downwards(_graph()))
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_engine_and_evaluation_do_not_import_each_other():
    graph = _graph()
    ev = {m for n, deps in graph.items() if n.startswith("segadapter.engine") for m in deps
          if m.startswith("segadapter.evaluation")}
    en = {m for n, deps in graph.items() if n.startswith("segadapter.evaluation") for m in deps
          if m.startswith("segadapter.engine")}
    assert not (ev and en), (ev, en)
