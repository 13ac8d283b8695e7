"""ONNX / TorchScript backends: cards, clear errors, bundled models."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from stream_engine.separators.base import SeparatorError  # noqa: E402
from stream_engine.separators.card import load_card, spec_from_card  # noqa: E402
from stream_engine.separators.onnx_backend import OnnxSeparator  # noqa: E402
from stream_engine.separators.torchscript_backend import TorchScriptSeparator  # noqa: E402
from stream_engine.training.export import export_model  # noqa: E402
from stream_engine.training.fixtures import fake_checkpoint, tiny_student  # noqa: E402

MODELS = Path(__file__).resolve().parent.parent / "stream_engine" / "models"
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    m = tiny_student()
    export_model(m, fake_checkpoint(m, "student"), out, "tiny", formats=("onnx", "torchscript"))
    return out


@pytest.fixture
def copy(exported, tmp_path):
    def make(stem="tiny", suffix=".onnx"):
        for p in exported.glob(f"{stem}{suffix}"):
            shutil.copy(p, tmp_path / p.name)
        shutil.copy(exported / f"{stem}.json", tmp_path / f"{stem}.json")
        return tmp_path / f"{stem}{suffix}", tmp_path / f"{stem}.json"

    return make


def test_spec_from_card(exported):
    sep = OnnxSeparator.from_path(exported / "tiny.onnx", profile="live")
    s = sep.spec
    assert s.stateful and s.fade == 0 and s.sample_rate == 16000 and s.channels == 1
    assert s.stems == ("vocals", "accompaniment")
    assert s.latency == 48  # n_fft - hop of the tiny student
    sep.reset(2)
    y = sep.separate(np.zeros((2, 1, s.window), np.float32))
    assert y.shape == (2, 2, 1, s.hop) and y.dtype == np.float32


def test_missing_model_and_card(tmp_path, copy):
    with pytest.raises(SeparatorError, match="model file not found"):
        OnnxSeparator.from_path(tmp_path / "none.onnx")
    model, card = copy()
    card.unlink()
    with pytest.raises(SeparatorError, match="no model card"):
        OnnxSeparator.from_path(model)


def test_corrupt_card(copy):
    model, card = copy()
    card.write_text("{ not json")
    with pytest.raises(SeparatorError, match=r"tiny\.json.*not valid JSON"):
        OnnxSeparator.from_path(model)


def test_card_missing_fields(copy):
    model, card = copy()
    c = json.loads(card.read_text())
    del c["hop"], c["stems"]
    card.write_text(json.dumps(c))
    with pytest.raises(SeparatorError, match="lacks required field.*stems.*hop|lacks required field.*hop"):
        OnnxSeparator.from_path(model)


def test_corrupt_model_bytes(copy):
    model, card = copy()
    data = bytearray(model.read_bytes())
    data[100:400] = b"\x00" * 300
    model.write_bytes(bytes(data))
    with pytest.raises(SeparatorError, match=r"tiny\.onnx.*does not match its card"):
        OnnxSeparator.from_path(model)
    # without the hash in the card, onnxruntime's own failure is reported with the file name
    c = json.loads(card.read_text())
    del c["sha256"]
    card.write_text(json.dumps(c))
    model.write_bytes(b"garbage, not a model")
    with pytest.raises(SeparatorError, match=r"tiny\.onnx.*cannot load"):
        OnnxSeparator.from_path(model)


def test_card_model_mismatch(copy):
    model, card = copy()
    c = json.loads(card.read_text())
    del c["sha256"]
    c["state"][0]["shape"] = [3, 7]
    card.write_text(json.dumps(c))
    with pytest.raises(SeparatorError, match="state 'h'"):
        OnnxSeparator.from_path(model)
    c = json.loads(card.read_text())
    c["state"][0]["shape"] = [2, 24]
    c["inputs"][1] = "hidden"
    card.write_text(json.dumps(c))
    with pytest.raises(SeparatorError, match="does not match its card"):
        OnnxSeparator.from_path(model)


def test_format_mismatch(copy):
    model, card = copy()
    with pytest.raises(SeparatorError, match="format"):
        TorchScriptSeparator.from_path(model.with_suffix(".onnx").rename(model.with_suffix(".pt")))


def test_torchscript_corrupt(copy):
    model, card = copy("tiny-torchscript", ".pt")
    c = json.loads(card.read_text())
    del c["sha256"]
    card.write_text(json.dumps(c))
    model.write_bytes(b"not a zip")
    with pytest.raises(SeparatorError, match="tiny-torchscript.pt.*TorchScript"):
        TorchScriptSeparator.from_path(model)


def test_cuda_without_provider_is_an_error(exported):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA provider present")
    with pytest.raises(SeparatorError, match="CUDAExecutionProvider"):
        OnnxSeparator.from_path(exported / "tiny.onnx", device="cuda")


def test_bundled_models_load_and_run():
    cards = sorted(MODELS.glob("*.json"))
    if not cards:
        pytest.skip("no bundled model yet")
    for cpath in cards:
        if not cpath.with_suffix(".onnx").exists():
            continue  # not an ONNX model (the diffusion model's torch weights: tests/test_diffusion.py)
        card = load_card(cpath.with_suffix(".onnx"))
        spec = spec_from_card(card, "quality")
        sep = OnnxSeparator.from_path(cpath.with_suffix(".onnx"), profile="quality" if not spec.stateful else "live")
        sep.reset(1)
        y = sep.separate(np.zeros((1, 1, sep.spec.window), np.float32))
        assert y.shape == (1, len(spec.stems), 1, sep.spec.segment)
        assert np.isfinite(y).all()


@pytest.mark.skipif(not (DATA / "mir1k" / "valid").is_dir(), reason="needs ../shared/data/mir1k/valid")
def test_bundled_student_separates_real_vocals():
    from stream_engine.evaluate import load_track
    from stream_engine.metrics import sdr
    from stream_engine.offline import separate_array

    onnx_files = [p for p in MODELS.glob("*.onnx") if json.loads(p.with_suffix(".json").read_text())["stateful"]]
    if not onnx_files:
        pytest.skip("no bundled student yet")
    folder = sorted((DATA / "mir1k" / "valid").iterdir())[0]
    stems, rate = load_track(folder)
    mix = (stems["vocals"] + stems["accompaniment"]).astype(np.float32)
    sep = OnnxSeparator.from_path(onnx_files[0], profile="live")
    est = separate_array(sep, mix, rate, "live")
    assert sdr(stems["vocals"], est["vocals"]) > 3.0


def test_weights_with_limited_use_say_their_licence_on_every_run(tmp_path, research_models):
    """The bundled MIR-1K models inherit MIR-1K's research-only terms: `models` marks them, and a run
    that loads one says the licence on stderr; a run of an MIT model (Spleeter's card) or a built-in says nothing."""
    import subprocess
    import sys

    from stream_engine.separators.registry import licence_note, restricted_licence

    assert "research" in restricted_licence("stemstream-student-int8")
    assert restricted_licence("dsp-center") is None and licence_note("spleeter") == ""
    listed = subprocess.run([sys.executable, "-m", "stream_engine.cli", "models"], capture_output=True, text=True)
    student = next(line for line in listed.stdout.splitlines() if line.startswith("stemstream-student-int8 "))
    assert "[licence: research use" in student
    code = ("from stream_engine.separators.registry import load_separator as l\n"
            "l('stemstream-student-int8', 'live'); l('stemstream-student-int8', 'live'); l('dsp-center', 'live')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("stemstream-student-int8: licence: research use") == 1  # once per process
    assert "dsp-center" not in run.stderr
