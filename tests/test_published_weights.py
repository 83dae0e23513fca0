"""The published checkpoints ship inside the package: named by --weights, the default of
their model, each file checked against its SHA-256 and carried with its licence."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from cli_helpers import assert_one_error_line, run_cli
from conftest import REPO, SHARED
from srexport.errors import CheckpointError
from srexport.models.published import INIT, SHIPPED, checked_path, resolve_weights

# The files as published, beside the repository (../shared/data/weights): an independent copy.
PUBLISHED = {
    "PCARN-M-L1": ("pcarn", "PCARN-M-L1.pth", "MIT License"),
    "PCARN-M": ("pcarn", "PCARN-M.pth", "MIT License"),
    "BOE-R1": ("gmgbp-pirm2018", "BOE-R1.model", "GNU LESSER GENERAL PUBLIC LICENSE"),
    "BOE-R2": ("gmgbp-pirm2018", "BOE-R2.model", "GNU LESSER GENERAL PUBLIC LICENSE"),
    "BOE-R3": ("gmgbp-pirm2018", "BOE-R3.model", "GNU LESSER GENERAL PUBLIC LICENSE"),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_exactly_the_licensed_checkpoints_ship():
    assert sorted(c.name for c in SHIPPED) == sorted(PUBLISHED)
    assert {c.name for c in SHIPPED if c.default} == {"PCARN-M-L1", "BOE-R1"}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_each_shipped_file_matches_its_recorded_hash_and_carries_its_licence(name):
    shipped = next(c for c in SHIPPED if c.name == name)
    folder, file, licence_title = PUBLISHED[name]
    assert shipped.path.name == file and shipped.path.is_file()
    assert _sha256(shipped.path) == shipped.sha256
    assert licence_title in shipped.licence_file.read_text()


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shipped_files_are_the_published_ones(name):
    folder, file, _ = PUBLISHED[name]
    published = SHARED / "weights" / folder / file
    if not published.exists():
        pytest.skip(f"{published} is absent (the shared data folder beside the repository)")
    shipped = next(c for c in SHIPPED if c.name == name)
    assert shipped.path.read_bytes() == published.read_bytes()


def test_weights_resolve_by_name_path_default_and_init(tmp_path):
    assert resolve_weights("pcarn-m", None).shipped.name == "PCARN-M-L1"
    assert resolve_weights("gmgbp", None).shipped.name == "BOE-R1"
    assert resolve_weights("gmgbp", "boe-r3").shipped.name == "BOE-R3"  # names are case-blind
    assert resolve_weights("bpp", None).path is None  # nothing published: the initialisation
    assert resolve_weights("pcarn-m", INIT).path is None
    own = tmp_path / "mine.pth"
    own.write_bytes(b"x")
    resolved = resolve_weights("pcarn-m", own)
    assert resolved.path == own and resolved.shipped is None


def test_a_checkpoint_of_another_family_or_a_missing_one_is_refused():
    with pytest.raises(CheckpointError, match="BOE-R1 is a gmgbp checkpoint, not pcarn-m"):
        resolve_weights("pcarn-m", "BOE-R1")
    with pytest.raises(CheckpointError, match="shipped for gmgbp: BOE-R1, BOE-R2, BOE-R3"):
        resolve_weights("gmgbp", "BOE-R9")


def test_a_damaged_shipped_file_is_refused(tmp_path):
    original = next(c for c in SHIPPED if c.name == "PCARN-M")
    damaged = bytearray(original.path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "pcarn").mkdir()
    (tmp_path / "pcarn" / "PCARN-M.pth").write_bytes(bytes(damaged))

    class Elsewhere(type(original)):
        @property
        def path(self) -> Path:
            return tmp_path / self.file

    with pytest.raises(CheckpointError, match="PCARN-M is damaged"):
        checked_path(Elsewhere(**{f: getattr(original, f) for f in original.__dataclass_fields__}))
    with pytest.raises(CheckpointError, match="missing from this installation"):
        checked_path(Elsewhere(**{f: getattr(replace(original, file="pcarn/absent.pth"), f)
                                  for f in original.__dataclass_fields__}))


def test_build_without_weights_uses_the_shipped_default_and_says_so(capsys, tmp_path):
    code, out, err = run_cli(capsys, "build", "--model", "pcarn-m", "--scale", "2", "--out", tmp_path / "b")
    assert code == 0, err
    assert "MEANINGLESS" not in err
    assert "weights: the shipped checkpoint PCARN-M-L1 (MIT)" in out
    checkpoint = json.loads((tmp_path / "b" / "manifest.json").read_text())["checkpoint"]
    default = next(c for c in SHIPPED if c.name == "PCARN-M-L1")
    assert checkpoint["shipped"] == "PCARN-M-L1" and checkpoint["licence"] == "MIT"
    assert checkpoint["sha256"] == _sha256(default.path)


def test_build_by_shipped_name_records_that_checkpoint(capsys, tmp_path):
    code, out, err = run_cli(capsys, "build", "--model", "pcarn-m", "--scale", "2", "--weights", "PCARN-M",
                             "--out", tmp_path / "b")
    assert code == 0, err
    checkpoint = json.loads((tmp_path / "b" / "manifest.json").read_text())["checkpoint"]
    assert checkpoint["shipped"] == "PCARN-M"
    assert checkpoint["sha256"] == _sha256(next(c for c in SHIPPED if c.name == "PCARN-M").path)


def test_build_with_a_foreign_shipped_name_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "build", "--model", "gmgbp", "--weights", "PCARN-M-L1", "--out", tmp_path / "b")
    assert_one_error_line(code, err, "PCARN-M-L1 is a pcarn-m checkpoint, not gmgbp")
    assert not (tmp_path / "b").exists()


def test_models_lists_the_shipped_names(capsys):
    code, out, err = run_cli(capsys, "models", "--json")
    assert code == 0, err
    rows = json.loads(out)
    names = {r["name"]: [c["name"] for c in r["shipped_weights"]] for r in rows}
    assert names["pcarn-m"] == ["PCARN-M-L1", "PCARN-M"]
    assert names["gmgbp"] == ["BOE-R1", "BOE-R2", "BOE-R3"]
    assert names["bpp"] == [] and names["mgbpv2"] == []
    code, table, _ = run_cli(capsys, "models")
    assert "PCARN-M-L1" in table and "BOE-R1" in table


@pytest.mark.slow
def test_the_wheel_carries_the_checkpoints_and_their_licences(tmp_path):
    """What `pip install` of the distribution gets, not only what an editable checkout sees."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("sr_export-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for shipped in SHIPPED:
            member = f"srexport/weights/{shipped.file}"
            assert member in names
            assert hashlib.sha256(archive.read(member)).hexdigest() == shipped.sha256
            assert f"srexport/weights/{Path(shipped.file).parent}/LICENSE" in names
