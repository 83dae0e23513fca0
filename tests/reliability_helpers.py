"""Shared pieces of the reliability tests: damaged bundle copies and the one-line check."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def edit_manifest(root: Path, edit: Callable[[dict], object]) -> None:
    """Apply `edit` to the parsed manifest (it may return a replacement) and write it back."""
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    replaced = edit(data)
    path.write_text(json.dumps(data if replaced is None else replaced))


def rehash(root: Path, names: list[str] | None = None) -> None:
    """Recompute the SHA-256 of the named files (default: those already listed)."""
    def edit(data: dict) -> None:
        for name in names or list(data["files"]):
            data["files"][name] = sha256(root / name)
    edit_manifest(root, edit)


def write_png(path: Path, height: int = 12, width: int = 14, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes (to prove nothing was changed or added)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_one_line(code: int, out: str, err: str) -> str:
    """Exit 2, one non-empty line on stderr starting 'error:', no traceback anywhere."""
    text = out + err
    assert "Traceback" not in text, text
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2, (code, text)
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("error:"), lines[0]
    return lines[0]


_opened: list | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes, Path)):
        _opened.append(Path(args[0].decode() if isinstance(args[0], bytes) else args[0]))


sys.addaudithook(_audit)


@contextmanager
def recording_opens() -> Iterator[list[Path]]:
    """Every path this process opens from Python (the `open` audit event) inside the block."""
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def opened_under(opened: list[Path], folder: Path) -> list[Path]:
    folder = folder.resolve()
    return [p for p in opened if Path(os.path.abspath(p)).resolve().is_relative_to(folder)]
