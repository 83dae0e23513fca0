"""The recorded TensorRT 11.4 / cuda-python API (tests/data/tensorrt_11_4_api.json) and
the checks that run against it: name resolution, call arity, and an AST scan of srexport/.

Module aliases: the code base names the imported modules `trt` (tensorrt), `trtp`
(tensorrt.plugin), `cudart` (cuda.bindings.runtime) and `drv` (cuda.bindings.driver),
whatever way it obtained them; explicit `import ... as X` statements add their own alias.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

API_FILE = Path(__file__).resolve().parents[1] / "data" / "tensorrt_11_4_api.json"
CONVENTIONAL = {
    "trt": "tensorrt",
    "trtp": "tensorrt.plugin",
    "cudart": "cuda.bindings.runtime",
    "drv": "cuda.bindings.driver",
}
IMPORTABLE = {"tensorrt": "tensorrt", "tensorrt.plugin": "tensorrt.plugin", "tensorrt_bindings": "tensorrt",
              "cuda.bindings.runtime": "cuda.bindings.runtime", "cuda.bindings.driver": "cuda.bindings.driver"}


@lru_cache(maxsize=1)
def load_api() -> dict:
    return json.loads(API_FILE.read_text())


def objects() -> dict:
    return load_api()["objects"]


def resolve(module: str, chain: list[str]) -> str | None:
    """None when `module`.chain exists in the recorded API, else why not."""
    objs = objects()
    qual = module
    record = objs.get(qual)
    if record is None:
        return f"{module} is not a recorded module"
    for i, name in enumerate(chain):
        where = ".".join([module, *chain[:i]])
        kind = record["kind"]
        if kind == "value":  # a module-level instance, e.g. trt.float16: look at its class
            cls = objs.get(f"{module}.{record['type']}")
            if cls is None:
                return None
            record, kind = cls, cls["kind"]
        if kind == "module":
            if name not in record["members"]:
                return f"{where} has no attribute '{name}'"
        elif kind == "enum":
            if name not in record["values"] and name not in ("name", "value"):
                return f"{where} (enum) has no member '{name}' (members: {', '.join(record['values'])})"
            return None
        elif kind == "class":
            known = set(record["members"]) | set(record["methods"]) | set(record.get("properties", {}))
            if name not in known:
                return f"{where} has no attribute '{name}'"
        else:  # a function: anything after it is on its result
            return None
        qual = f"{qual}.{name}"
        nxt = objs.get(qual)
        if nxt is None:
            return None  # a method, property or plain value: the chain continues on its result
        record = nxt
    return None


def signatures(qual: str) -> list[dict] | None:
    """Recorded overloads of a function, a class's constructor or a method `Class.name`."""
    objs = objects()
    record = objs.get(qual)
    if record is not None:
        if record["kind"] == "function":
            return record["signatures"]
        if record["kind"] == "class" and isinstance(record.get("methods"), dict):
            return record["methods"].get("__init__")
        return None
    owner, _, name = qual.rpartition(".")
    record = objs.get(owner)
    if record and record["kind"] == "class" and isinstance(record.get("methods"), dict):
        return record["methods"].get(name)
    return None


def check_call(qual: str, positional: int, keywords: list[str]) -> str | None:
    """None when some recorded overload of `qual` takes this many positional arguments and
    these keywords; else why not. Unknown signatures pass."""
    overloads = signatures(qual)
    if not overloads:
        return None
    for overload in overloads:
        params = overload["params"]
        names = [p for p, _ in params]
        if any(p.startswith("*") for p in names):
            return None
        if positional > len(params):
            continue
        given = set(names[:positional])
        if any(k not in names or k in given for k in keywords):
            continue
        if all(optional or pname in given or pname in keywords for pname, optional in params):
            return None
    shown = " | ".join("(" + ", ".join(p + ("=..." if o else "") for p, o in s["params"]) + ")" for s in overloads)
    return f"{qual} called with {positional} positional argument(s) and keywords {keywords}: no overload fits {shown}"


# -- scanning source -------------------------------------------------------------------------
@dataclass(frozen=True)
class Use:
    file: str
    line: int
    module: str
    chain: tuple[str, ...]
    call: tuple[int, tuple[str, ...]] | None  # (positional count, keyword names) when called

    @property
    def text(self) -> str:
        alias = {v: k for k, v in CONVENTIONAL.items()}.get(self.module, self.module)
        return f"{alias}.{'.'.join(self.chain)}"


def _aliases(tree: ast.AST) -> dict[str, str]:
    aliases = dict(CONVENTIONAL)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in IMPORTABLE and a.asname:
                    aliases[a.asname] = IMPORTABLE[a.name]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in IMPORTABLE:
                    aliases[a.asname or a.name] = IMPORTABLE[full]
    return aliases


def _chain(node: ast.AST) -> tuple[str, list[str]] | None:
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return node.id, names[::-1]
    return None


def scan_source(path: Path, root: Path) -> list[Use]:
    """Every attribute chain rooted at a TensorRT / cuda-python module alias in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases = _aliases(tree)
    inner: set[int] = set()
    calls: dict[int, tuple[int, tuple[str, ...]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            inner.add(id(node.value))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
                continue
            calls[id(node.func)] = (len(node.args), tuple(k.arg for k in node.keywords))
    uses = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue
        found = _chain(node)
        if found is None or found[0] not in aliases:
            continue
        root_name, chain = found
        uses.append(Use(path.relative_to(root).as_posix(), node.lineno, aliases[root_name], tuple(chain),
                        calls.get(id(node))))
    return uses


def scan_package(package: Path) -> list[Use]:
    root = package.parent
    uses: list[Use] = []
    for path in sorted(package.rglob("*.py")):
        uses.extend(scan_source(path, root))
    return uses


def problems(uses: list[Use]) -> list[str]:
    found = []
    for use in uses:
        why = resolve(use.module, list(use.chain))
        if why is None and use.call is not None:
            qual = ".".join([use.module, *use.chain])
            positional, keywords = use.call[0], list(use.call[1])
            why = check_call(qual, positional, keywords)
            owner = objects().get(qual.rpartition(".")[0], {})
            if why and owner.get("kind") == "class" and positional and not check_call(qual, positional - 1, keywords):
                why = None  # Class.method(instance, ...): the instance is `self`
        if why:
            found.append(f"{use.file}:{use.line}: {use.text}: {why}")
    return found
