"""Building the kernels: the g++ host twin library and the nvcc fatbins, both cached.

- `host_library()` compiles host_twin.cpp (plus the .cuh headers it shares with the CUDA
  sources) with g++ into a shared library, once per source/compiler/flags hash, under the
  cache directory (`$SREXPORT_CACHE_DIR`, else `$XDG_CACHE_HOME/sr-export`, else
  `~/.cache/sr-export`), never inside the source tree.
- `compile_cuda(name)` compiles one .cu with nvcc for every target architecture
  (`ARCHS`, cubins) plus PTX of the newest one, warnings as errors, and returns the
  ptxas resources of every kernel on every architecture; a spill is an error unless the
  caller asks only for the report. Fatbins are cached like the host library.
- `ptx(name, arch)` returns PTX text (TensorRT AOT plugins take PTX).

Nothing here needs a GPU: nvcc and g++ only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from srexport.errors import KernelBuildError
from srexport.fsutil import atomic_path

KERNEL_DIR = Path(__file__).resolve().parent
CU_SOURCES = ("srx_blend.cu", "srx_vnsc.cu")
HEADERS = ("srx_common.cuh", "srx_blend.cuh", "srx_vnsc.cuh")
HOST_SOURCE = "host_twin.cpp"
ARCHS = ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90")
PTX_ARCH = "compute_90"  # PTX of the newest target rides along in the fatbin (JIT on newer GPUs)
PLUGIN_PTX_ARCH = "compute_75"  # PTX for TensorRT AOT plugins: loads on every supported GPU

HOST_FLAGS = (
    "-O2", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math",
    "-Wall", "-Wextra", "-Werror",
)
NVCC_FLAGS = (
    "-O3", "-std=c++17", "-Werror", "all-warnings",
    "-Xptxas", "-v,-warn-spills,-warn-lmem-usage",
)


# -- cache ---------------------------------------------------------------------------
def cache_dir() -> Path:
    """Where built artefacts live: $SREXPORT_CACHE_DIR, $XDG_CACHE_HOME/sr-export or ~/.cache/sr-export."""
    root = os.environ.get("SREXPORT_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "sr-export"
    path = base / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:20]


def _sources_blob(names: tuple[str, ...]) -> bytes:
    return b"".join(name.encode() + b"\0" + (KERNEL_DIR / name).read_bytes() for name in names)


def _run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=KERNEL_DIR)
    except FileNotFoundError as exc:
        raise KernelBuildError(f"{cmd[0]} not found: {exc}") from None
    except subprocess.TimeoutExpired:
        raise KernelBuildError(f"{Path(cmd[0]).name} took more than {timeout:.0f} s") from None


# -- host twin -----------------------------------------------------------------------
def cxx_path() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def _tool_version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def host_library(force: bool = False) -> Path:
    """Path of the compiled host twin library, building it when absent or stale."""
    cxx = cxx_path()
    if cxx is None:
        raise KernelBuildError("no C++ compiler (g++) found: the kernels' host twins need one")
    key = _digest(_sources_blob((HOST_SOURCE, *HEADERS)), _tool_version(cxx), " ".join(HOST_FLAGS))
    lib = cache_dir() / f"libsrx_host-{key}.so"
    if lib.exists() and not force:
        return lib
    with atomic_path(lib) as tmp:
        cmd = [cxx, *HOST_FLAGS, "-I", str(KERNEL_DIR), "-o", str(tmp), str(KERNEL_DIR / HOST_SOURCE)]
        result = _run(cmd)
        if result.returncode != 0:
            raise KernelBuildError(f"g++ failed on {HOST_SOURCE}:\n{result.stderr.strip()}")
    return lib


# -- nvcc ----------------------------------------------------------------------------
def nvcc_path() -> str | None:
    """nvcc on PATH, else under $CUDA_HOME / $CUDA_PATH / /usr/local/cuda."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return None


def nvcc_version(nvcc: str | None = None) -> str | None:
    """'13.0' style release of nvcc, or None when there is no nvcc."""
    nvcc = nvcc or nvcc_path()
    if nvcc is None:
        return None
    match = re.search(r"release (\d+\.\d+)", _tool_version(nvcc))
    return match.group(1) if match else None


@dataclass(frozen=True)
class KernelResources:
    """What ptxas reported for one kernel on one architecture."""

    kernel: str
    arch: str
    registers: int
    shared_bytes: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int
    const_bytes: int
    barriers: int

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


@dataclass
class CudaBuild:
    source: str
    fatbin: Path
    archs: tuple[str, ...]
    ptx_arch: str
    nvcc_version: str
    resources: list[KernelResources] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cached: bool = False

    @property
    def spilled(self) -> list[KernelResources]:
        return [r for r in self.resources if r.spills]

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "fatbin": str(self.fatbin),
            "archs": list(self.archs),
            "ptx_arch": self.ptx_arch,
            "nvcc_version": self.nvcc_version,
            "seconds": round(self.seconds, 2),
            "cached": self.cached,
            "warnings": self.warnings,
            "resources": [asdict(r) for r in self.resources],
        }


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(.*)")


def parse_ptxas(log: str) -> list[KernelResources]:
    """KernelResources for every 'Compiling entry function' block of a `ptxas -v` log."""
    found: list[KernelResources] = []
    current: dict | None = None

    def flush():
        if current is not None and "registers" in current:
            found.append(KernelResources(**current))

    for line in log.splitlines():
        entry = _ENTRY.search(line)
        if entry:
            flush()
            current = {
                "kernel": entry.group(1), "arch": entry.group(2), "stack_bytes": 0, "spill_stores": 0,
                "spill_loads": 0, "shared_bytes": 0, "const_bytes": 0, "barriers": 0,
            }
            continue
        if current is None:
            continue
        props = _PROPS.search(line)
        if props:
            current["stack_bytes"], current["spill_stores"], current["spill_loads"] = map(int, props.groups())
            continue
        used = _USED.search(line)
        if used:
            current["registers"] = int(used.group(1))
            rest = used.group(2)
            smem = re.search(r"(\d+) bytes smem", rest)
            cmem = re.findall(r"(\d+) bytes cmem\[\d+\]", rest)
            bars = re.search(r"used (\d+) barriers", rest)
            current["shared_bytes"] = int(smem.group(1)) if smem else 0
            current["const_bytes"] = sum(map(int, cmem))
            current["barriers"] = int(bars.group(1)) if bars else 0
    flush()
    return found


def _gencodes(archs: tuple[str, ...], ptx_arch: str | None) -> list[str]:
    flags = []
    for arch in archs:
        num = arch.split("_")[1]
        flags += ["-gencode", f"arch=compute_{num},code=sm_{num}"]
    if ptx_arch:
        num = ptx_arch.split("_")[1]
        flags += ["-gencode", f"arch=compute_{num},code=compute_{num}"]
    return flags


def compile_cuda(name: str, archs: tuple[str, ...] = ARCHS, ptx_arch: str | None = PTX_ARCH, *,
                 allow_spills: bool = False, force: bool = False) -> CudaBuild:
    """Compile kernels/<name> (a .cu) into a cached fatbin for `archs` plus PTX of `ptx_arch`.

    Raises KernelBuildError when nvcc is missing, on any error or warning (warnings are
    errors), and on register spills unless `allow_spills`."""
    if name not in CU_SOURCES:
        raise KernelBuildError(f"unknown kernel source '{name}' (sources: {', '.join(CU_SOURCES)})")
    nvcc = nvcc_path()
    if nvcc is None:
        raise KernelBuildError("nvcc not found (install the CUDA toolkit, or set CUDA_HOME)")
    version = nvcc_version(nvcc) or "unknown"
    flags = [*NVCC_FLAGS, *_gencodes(archs, ptx_arch)]
    key = _digest(_sources_blob((name, *HEADERS)), _tool_version(nvcc), " ".join(flags))
    stem = f"{Path(name).stem}-{key}"
    fatbin = cache_dir() / f"{stem}.fatbin"
    report = cache_dir() / f"{stem}.json"
    if fatbin.exists() and report.exists() and not force:
        data = json.loads(report.read_text())
        build = CudaBuild(
            name, fatbin, tuple(data["archs"]), data["ptx_arch"], data["nvcc_version"],
            [KernelResources(**r) for r in data["resources"]], data["warnings"], data["seconds"], cached=True,
        )
    else:
        start = time.perf_counter()
        with atomic_path(fatbin) as tmp:
            cmd = [nvcc, "-fatbin", *flags, "-I", str(KERNEL_DIR), "-o", str(tmp), str(KERNEL_DIR / name)]
            result = _run(cmd)
            log = result.stdout + result.stderr
            if result.returncode != 0:
                raise KernelBuildError(f"nvcc failed on {name}:\n{log.strip()}")
        warnings = [line.strip() for line in log.splitlines() if "warning" in line.lower()]
        build = CudaBuild(name, fatbin, tuple(archs), ptx_arch or "", version, parse_ptxas(log), warnings,
                          time.perf_counter() - start)
        expected = {a for a in archs}
        seen = {r.arch for r in build.resources}
        if seen != expected:
            raise KernelBuildError(f"ptxas reported architectures {sorted(seen)} for {name}, expected {sorted(expected)}")
        with atomic_path(report) as tmp:
            tmp.write_text(json.dumps(build.to_json(), indent=1))
    if build.spilled and not allow_spills:
        worst = ", ".join(f"{r.kernel}@{r.arch} ({r.spill_stores} B stores, {r.spill_loads} B loads)" for r in build.spilled)
        raise KernelBuildError(f"register spills in {name}: {worst}")
    return build


def compile_all(archs: tuple[str, ...] = ARCHS, *, allow_spills: bool = False, force: bool = False) -> list[CudaBuild]:
    """compile_cuda for every .cu, two at a time (one nvcc per source)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(compile_cuda, name, archs, allow_spills=allow_spills, force=force) for name in CU_SOURCES]
        return [f.result() for f in futures]


def summary(builds: list[CudaBuild]) -> str:
    """One line per kernel and architecture: registers, shared memory, stack, spills."""
    lines = []
    for build in builds:
        state = "cached" if build.cached else f"{build.seconds:.1f} s"
        lines.append(f"{build.source}: nvcc {build.nvcc_version}, {', '.join(build.archs)} + PTX {build.ptx_arch} ({state})")
        for r in sorted(build.resources, key=lambda r: (r.kernel, r.arch)):
            lines.append(
                f"  {r.kernel:<26} {r.arch:<6} {r.registers:>3} regs  {r.shared_bytes:>6} B smem  "
                f"{r.stack_bytes:>3} B stack  spills {r.spill_stores}/{r.spill_loads} B"
            )
    return "\n".join(lines)


def export_fatbins(dest: str | Path) -> list[Path]:
    """Write <stem>.fatbin for every .cu into `dest` (precompiled kernels for machines
    without nvcc or NVRTC: point SREXPORT_FATBIN_DIR at that folder)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for b in compile_all():
        target = dest / f"{Path(b.source).stem}.fatbin"
        with atomic_path(target) as tmp:
            tmp.write_bytes(b.fatbin.read_bytes())
        written.append(target)
    return written


def ptx(name: str, arch: str = PLUGIN_PTX_ARCH) -> str:
    """PTX text of kernels/<name> for a virtual architecture, by nvcc (without nvcc,
    `srexport.kernels.cuda.nvrtc_compile(name, arch, ptx=True)` gives it)."""
    if name not in CU_SOURCES:
        raise KernelBuildError(f"unknown kernel source '{name}' (sources: {', '.join(CU_SOURCES)})")
    nvcc = nvcc_path()
    if nvcc is None:
        raise KernelBuildError("nvcc not found (install the CUDA toolkit, or set CUDA_HOME)")
    flags = ["-O3", "-std=c++17", "-Werror", "all-warnings", f"-arch={arch}"]
    key = _digest(_sources_blob((name, *HEADERS)), _tool_version(nvcc), " ".join(flags))
    out = cache_dir() / f"{Path(name).stem}-{key}.ptx"
    if not out.exists():
        with atomic_path(out) as tmp:
            result = _run([nvcc, "-ptx", *flags, "-I", str(KERNEL_DIR), "-o", str(tmp), str(KERNEL_DIR / name)])
            if result.returncode != 0:
                raise KernelBuildError(f"nvcc -ptx failed on {name}:\n{(result.stdout + result.stderr).strip()}")
    return out.read_text()


def main(argv: list[str] | None = None) -> int:
    """python -m srexport.kernels.compiler [--force] [--json]: compile every .cu for every
    target architecture; exit 1 on an error, a warning or a spill; 0 without nvcc."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if nvcc_path() is None:
        print("nvcc not found: CUDA kernels not compiled")
        return 0
    try:
        builds = compile_all(force="--force" in args)
    except KernelBuildError as exc:
        print(f"kernel build failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps([b.to_json() for b in builds], indent=1) if "--json" in args else summary(builds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
