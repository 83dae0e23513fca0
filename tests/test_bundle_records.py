"""The manifest's typed records (checkpoint, parity checks, engine builds, the verify note)
read the JSON that bundles already on disk hold and write it back unchanged."""

from __future__ import annotations

import json

import pytest

from srexport.bundle import CheckpointRecord, Manifest, ModelIdentity, ParityCheck, VerifyNote
from srexport.errors import BundleError
from srexport.tensorrt.builder import EngineRecord, engine_records

SHA = "ab" * 32
# a manifest as earlier builds wrote it: the engine record carries a pre-rendered "line"
EXISTING = {
    "model": "pcarn-m", "variant": "m", "scale": 4, "task": "sr", "input_kind": "lr", "params": 10,
    "inputs": ["image"], "noise_inputs": [], "outputs": ["output"],
    "shape_rules": {"multiple_of": 1, "offset": 0, "min_size": 1, "output_scale": 4, "halo": None,
                    "pad_rule": "reflect", "pad_align": "end"},
    "patch": 64, "overlap": 8,
    "precisions": {
        "fp32": {"file": "model.fp32.onnx", "max_abs_error_vs_torch": 1e-6, "psnr_vs_fp32_db": None,
                 "psnr_y_db": None, "notes": {}},
        "bf16": {"file": "model.fp32.onnx", "max_abs_error_vs_torch": None, "psnr_vs_fp32_db": 51.2,
                 "psnr_y_db": 30.1, "notes": {"verify": {"inputs": "2 synthetic 40x48 LR pictures (seeds 1000..)",
                                                         "psnr_vs_fp32_db": 52.5, "tolerance_db": 1.0,
                                                         "method": "emulated"}}},
    },
    "files": {"model.fp32.onnx": SHA},
    "checkpoint": {"file": "PCARN-M-L1.pth", "sha256": SHA, "shipped": "PCARN-M-L1", "licence": "MIT",
                   "source": "https://example.org/pcarn"},
    "tools": {"sr-export": "0.1.0", "tensorrt_engines": [
        {"precision": "fp16", "status": "built", "reason": "", "file": "fp16_sm86.plan", "seconds": 83.25,
         "line": "fp16 engine built: engines/fp16_sm86.plan (83.2 s)"},
        {"precision": "int8", "status": "skipped", "reason": "the bundle has no int8 graph", "file": None,
         "seconds": None, "line": "int8 engine skipped: the bundle has no int8 graph"},
    ]},
    "verification": [{"height": 24, "width": 24, "padded": False, "max_abs_error": 2e-6},
                     {"height": 25, "width": 31, "padded": True, "max_abs_error": 3e-6}],
    "plugin_graph": None, "value_range": [0.0, 1.0], "channel_order": "RGB", "layout": "NCHW",
    "format_version": 1,
}


def test_an_existing_manifest_reads_into_records_and_writes_back_the_same_json():
    manifest = Manifest.from_json(json.dumps(EXISTING))
    assert manifest.identity == ModelIdentity("pcarn-m", "m", 4, "sr")
    assert manifest.checkpoint == CheckpointRecord("PCARN-M-L1.pth", SHA, "PCARN-M-L1", "MIT",
                                                   "https://example.org/pcarn")
    assert manifest.verification == [ParityCheck(24, 24, False, 2e-6), ParityCheck(25, 31, True, 3e-6)]
    assert manifest.precisions["bf16"].verify_note() == VerifyNote(
        "2 synthetic 40x48 LR pictures (seeds 1000..)", 52.5, 1.0, "emulated")
    assert manifest.precisions["fp32"].verify_note() is None
    # written back: the same JSON, plus the fields newer versions record (null when absent)
    assert json.loads(manifest.to_json()) == {**EXISTING, "graph_rewrites": None, "zero_noise_graph": None, "stitch_halo": None}


def test_engine_records_render_the_line_earlier_bundles_stored():
    manifest = Manifest.from_json(json.dumps(EXISTING))
    records = engine_records(manifest)
    assert records == [EngineRecord("fp16", "built", "", "fp16_sm86.plan", 83.25),
                       EngineRecord("int8", "skipped", "the bundle has no int8 graph", None, None)]
    assert [r.line() for r in records] == [e["line"] for e in EXISTING["tools"]["tensorrt_engines"]]
    assert "line" not in records[0].to_json()


def test_a_local_checkpoint_keeps_the_short_record():
    record = CheckpointRecord("mine.pth", SHA)
    assert record.to_json() == {"file": "mine.pth", "sha256": SHA}
    assert CheckpointRecord.from_json({"file": "mine.pth", "sha256": SHA}) == record


@pytest.mark.parametrize("checkpoint, message", [
    ({"file": "a.pth"}, "'checkpoint.sha256' is missing"),
    ({"file": "a.pth", "sha256": SHA, "owner": "x"}, "unknown field 'checkpoint.owner'"),
    ({"file": 3, "sha256": SHA}, "'checkpoint.file' must be a string"),
])
def test_a_bad_checkpoint_record_names_its_field(checkpoint, message):
    with pytest.raises(BundleError, match=message):
        Manifest.from_json(json.dumps(EXISTING | {"checkpoint": checkpoint}))


def test_a_verify_note_without_a_method_writes_none():
    note = VerifyNote("2 pictures", 44.0, 1.0)
    assert note.to_json() == {"inputs": "2 pictures", "psnr_vs_fp32_db": 44.0, "tolerance_db": 1.0}
