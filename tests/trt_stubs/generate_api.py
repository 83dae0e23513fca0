"""Regenerate tests/data/tensorrt_11_4_api.json: the public API of the real TensorRT 11.4
Python bindings (and of cuda-python's runtime/driver bindings), read by introspection.

TensorRT's bindings (`tensorrt_bindings/tensorrt.so`) link against libnvinfer.so.11,
libnvinfer_plugin.so.11 and libnvonnxparser.so.11, which only NVIDIA's own index serves.
Introspection needs none of their code, only their symbols, so this script compiles tiny
stub libraries with those sonames (a C compiler is needed), loads them RTLD_GLOBAL (the
dynamic loader then satisfies the bindings' DT_NEEDED entries by soname) and imports the
bindings. Nothing from the stubs is ever called.

    # once, into a scratch folder (1.3 MB; --no-deps: the -libs package is unreachable)
    pip install --no-deps --target /tmp/trt-bindings tensorrt-cu13-bindings==11.4.0.106
    pip install --target /tmp/cuda-python cuda-python==13.4.4
    python tests/trt_stubs/generate_api.py --site /tmp/trt-bindings --site /tmp/cuda-python

`--check` compares with the committed file instead of writing it (exit 1 on a difference).
`--stdout` prints the JSON. Run as a script, it works in its own process: the stubs never
enter a test process (a fake "TensorRT" there would make other code think it has one).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "data" / "tensorrt_11_4_api.json"
EXPECTED_VERSION = "11.4.0.106"

# Every symbol tensorrt.so imports from the three libraries (readelf --dyn-syms, UND).
STUBS = {
    "libnvinfer.so.11": [
        "createInferBuilder_INTERNAL", "createInferRefitter_INTERNAL", "createInferRuntime_INTERNAL",
        "getBuilderPluginRegistry", "getPluginRegistry", "getInferLibVersion",
    ],
    "libnvinfer_plugin.so.11": ["initLibNvInferPlugins"],
    "libnvonnxparser.so.11": [
        "createNvOnnxParser_INTERNAL", "createNvOnnxParserRefitter_INTERNAL", "getNvOnnxParserVersion",
    ],
}
CUDA_MODULES = ("cuda.bindings.runtime", "cuda.bindings.driver")


def build_stubs(directory: Path) -> list[Path]:
    """Compile one stub library per soname into `directory`; returns them in load order."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) to build the stub libraries")
    paths = []
    for soname, symbols in STUBS.items():
        source = directory / f"{soname}.c"
        source.write_text("".join(f"void *{name}(void) {{ return 0; }}\n" for name in symbols))
        out = directory / soname
        subprocess.run([cc, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(out), str(source)],
                       check=True, capture_output=True)
        paths.append(out)
    return paths


def import_bindings(stub_dir: Path):
    """Import tensorrt_bindings (or tensorrt) with the stubs standing in for the libraries."""
    try:
        module = importlib.import_module("tensorrt")
    except ImportError:
        for lib in build_stubs(stub_dir):
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        module = importlib.import_module("tensorrt_bindings")
        sys.modules.setdefault("tensorrt", module)  # its `plugin` subpackage imports `tensorrt`
    import logging

    logging.disable(logging.WARNING)
    plugin = importlib.import_module(module.__name__ + ".plugin")
    return module, plugin


# -- pybind11 signatures --------------------------------------------------------------------
def _split_params(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def _clean(text: str) -> str:
    return text.replace("tensorrt_bindings.tensorrt.", "tensorrt.").replace("tensorrt_bindings.", "tensorrt.").strip()


def pybind_signatures(name: str, doc: str | None) -> list[dict]:
    """Overloads of a pybind11 function from its docstring: [{params, returns}]."""
    found = []
    for line in (doc or "").splitlines():
        match = re.match(r"^\s*(?:\d+\.\s+)?" + re.escape(name) + r"\((.*)\)\s*->\s*(.+?)\s*$", line)
        if not match:
            continue
        params = []
        for raw in _split_params(match.group(1)):
            if raw in ("*args", "**kwargs"):
                params.append([raw, True])
                continue
            pname = raw.split(":")[0].split("=")[0].strip()
            params.append([pname, "=" in raw])
        if params and params[0][0] in ("self", "arg0") and not params[0][1]:
            params = params[1:]
        found.append({"params": params, "returns": _clean(match.group(2))})
    return found


def python_signature(obj) -> list[dict]:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    params = []
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.VAR_POSITIONAL:
            params.append(["*" + p.name, True])
        elif p.kind is p.VAR_KEYWORD:
            params.append(["**" + p.name, True])
        else:
            params.append([p.name, p.default is not p.empty])
    return [{"params": params, "returns": ""}]


def _signatures(name: str, obj) -> list[dict]:
    sigs = pybind_signatures(name, getattr(obj, "__doc__", None))
    if sigs:
        return [s for s in sigs if not (s["params"] == [["*args", True], ["**kwargs", True]])] or sigs
    return python_signature(obj)


def _public(names) -> list[str]:
    return sorted(n for n in names if not n.startswith("_"))


def describe_class(qual: str, cls, objects: dict, owner: str) -> None:
    if qual in objects:
        return
    record: dict = {"kind": "enum" if hasattr(cls, "__members__") else "class",
                    "bases": [f"{owner}.{b.__qualname__}" if b.__module__.startswith(("tensorrt", "cuda"))
                              else b.__name__ for b in cls.__mro__[1:] if b is not object]}
    members = _public(dir(cls))
    if record["kind"] == "enum":
        record["values"] = sorted(cls.__members__)
    methods, properties = {}, {}
    init = cls.__dict__.get("__init__") or getattr(cls, "__init__", None)
    if init is not None and init is not object.__init__:
        methods["__init__"] = _signatures("__init__", init)
    for name in members:
        try:
            raw = inspect.getattr_static(cls, name)
        except AttributeError:
            raw = getattr(cls, name, None)
        value = getattr(cls, name, None)
        if isinstance(raw, property):
            fget = raw.fget
            sig = pybind_signatures("", getattr(fget, "__doc__", "") and "(" + fget.__doc__.split("(", 1)[-1]) \
                if fget is not None and fget.__doc__ and fget.__doc__.startswith("(") else []
            properties[name] = {"type": sig[0]["returns"] if sig else "", "writable": raw.fset is not None}
        elif isinstance(value, type) and value.__module__.startswith(("tensorrt", "cuda")):
            describe_class(f"{qual}.{name}", value, objects, owner)
        elif callable(raw) or callable(value):
            if record["kind"] == "enum" and name in record.get("values", []):
                continue
            methods[name] = _signatures(name, value)
    if record["kind"] == "enum":  # the values are what code uses; int's own methods are noise
        objects[qual] = {"kind": "enum", "values": record["values"]}
        return
    record["members"] = members
    if owner.startswith("cuda"):  # structs: field and method names suffice
        record["methods"] = sorted(methods)
    else:
        record["methods"] = methods
        record["properties"] = properties
    objects[qual] = record


def describe_module(prefix: str, module, objects: dict) -> None:
    names = _public(getattr(module, "__all__", None) or dir(module))
    objects[prefix] = {"kind": "module", "members": names}
    for name in names:
        value = getattr(module, name)
        if inspect.ismodule(value):
            continue
        if isinstance(value, type):
            describe_class(f"{prefix}.{name}", value, objects, prefix)
        elif callable(value):
            objects[f"{prefix}.{name}"] = {"kind": "function", "signatures": _signatures(name, value)}
        else:
            objects[f"{prefix}.{name}"] = {"kind": "value", "type": type(value).__name__}


def dump(stub_dir: Path) -> dict:
    trt, plugin = import_bindings(stub_dir)
    objects: dict = {}
    describe_module("tensorrt", trt, objects)
    # the plugin package exports its API at the top level
    describe_module("tensorrt.plugin", plugin, objects)
    objects["tensorrt"]["members"] = sorted(set(objects["tensorrt"]["members"]) | {"plugin", "__version__"})
    packages = {"tensorrt-cu13-bindings": trt.__version__}
    for name in CUDA_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        describe_module(name, module, objects)
        import cuda.bindings

        packages["cuda-bindings"] = cuda.bindings.__version__
    return {
        "generated_by": "tests/trt_stubs/generate_api.py",
        "packages": packages,
        "objects": dict(sorted(objects.items())),
    }


def to_text(data: dict) -> str:
    """JSON with one line per object (small, and diffs show which names changed)."""
    head = {k: v for k, v in data.items() if k != "objects"}
    lines = [json.dumps(k) + ": " + json.dumps(v, separators=(",", ":")) for k, v in data["objects"].items()]
    body = json.dumps(head, indent=1)[:-2]
    return body + ',\n "objects": {\n' + ",\n".join(lines) + "\n }\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", action="append", default=[], help="folder holding tensorrt_bindings/ or cuda/")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    parser.add_argument("--stdout", action="store_true", help="print the JSON instead of writing it")
    parser.add_argument("--tensorrt-only", action="store_true", help="leave the cuda-python modules out")
    args = parser.parse_args(argv)
    for site in reversed(args.site):
        sys.path.insert(0, str(Path(site).resolve()))
    global CUDA_MODULES
    if args.tensorrt_only:
        CUDA_MODULES = ()
    with tempfile.TemporaryDirectory(prefix="trt-stubs-") as tmp:
        data = dump(Path(tmp))
    version = data["packages"]["tensorrt-cu13-bindings"]
    if version != EXPECTED_VERSION:
        print(f"warning: introspected TensorRT {version}, the committed list is for {EXPECTED_VERSION}",
              file=sys.stderr)
    text = to_text(data)
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:  # compare the modules introspected now with their committed record
        committed = json.loads(args.out.read_text())["objects"]
        fresh = data["objects"]
        roots = {k.split(".")[0] if k.startswith("tensorrt") else ".".join(k.split(".")[:3]) for k in fresh}
        mine = {k: v for k, v in committed.items()
                if (k.split(".")[0] if k.startswith("tensorrt") else ".".join(k.split(".")[:3])) in roots}
        differ = sorted(set(mine) ^ set(fresh) | {k for k in set(mine) & set(fresh) if mine[k] != fresh[k]})
        for name in differ[:20]:
            print(f"differs: {name}", file=sys.stderr)
        return 1 if differ else 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.part")
    tmp_out.write_text(text)
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out} ({len(data['objects'])} names, {', '.join(f'{k} {v}' for k, v in data['packages'].items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
