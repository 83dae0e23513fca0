"""The package's shape: no import cycle between its modules, and every module imports only
from its own layer or the layers below (ARCHITECTURE.md). Imports are read from the source
(ast), including those inside functions, so a cycle hidden in a lazy import still fails."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "srexport"

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("srexport.version", "srexport.errors", "srexport.fsutil", "srexport.lazy", "srexport.validation",
              "srexport.shapes", "srexport.model_table",
              "srexport.ort", "srexport.onnx_passes", "srexport.calib.options", "srexport.cabi")),
    ("models", ("srexport.models",)),
    ("bundle", ("srexport.bundle", "srexport.graphcheck")),
    ("graphs", ("srexport.export.onnx_export", "srexport.export.model_bundle", "srexport.export.stitch_halo",
                "srexport.profiling.flops", "srexport.profiling.schema", "srexport.profiling.plot",
                "srexport.kernels", "srexport.tensorrt")),
    ("runtime", ("srexport.runtime", "srexport.export.parity", "srexport.video", "srexport.profiling.titanx",
                 "srexport.profiling.peak")),
    ("calib", ("srexport.calib",)),
    ("apps", ("srexport.export", "srexport.profiling", "srexport.triton", "srexport.distributed",
              "srexport.video.runner")),
    ("entry", ("srexport", "srexport.cli", "srexport.doctor", "srexport.__main__")),
]


def module_files() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, package)
    return found


MODULES = module_files()


def _owner(name: str) -> str | None:
    """The module `name` lives in (`srexport.a.b.func` -> `srexport.a.b`)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """The srexport modules `module` imports anywhere in its source, functions included."""
    path, package = MODULES[module]
    here = module if package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import sub` imports the submodule when there is one
            names = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        else:
            continue
        for name in names:
            if name == "srexport" or name.startswith("srexport."):
                owner = _owner(name)
                if owner is not None and owner != module:
                    found.add(owner)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def layer_of(module: str) -> int | None:
    best, index = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    return index


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_known_cycle():
    # its own reference: a hand-made graph with one three-module cycle and one clean branch
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_are_seen():
    # srexport.__init__ imports the upscaler only inside `load`
    assert "srexport.runtime.upscaler" in GRAPH["srexport"]


def test_no_import_cycle_between_modules():
    found = cycles(GRAPH)
    assert found == [], "import cycles:\n" + "\n".join(
        " <-> ".join(c) + "\n    " + "\n    ".join(f"{m} -> {sorted(GRAPH[m] & set(c))}" for m in c) for c in found
    )


def test_every_module_has_a_layer():
    assert [m for m in MODULES if layer_of(m) is None] == []


def test_every_module_imports_only_from_its_layer_or_below():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) -> {d} ({LAYERS[layer_of(d)][0]})"
              for m in sorted(MODULES) for d in sorted(GRAPH[m]) if layer_of(d) > layer_of(m)]
    assert upward == [], "imports from a higher layer:\n" + "\n".join(upward)
