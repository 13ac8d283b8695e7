"""hybrid-4stem: Spleeter's vocals; drums and bass from a four-stem separator run on the rest."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from stream_engine.separators.framer import Framer  # noqa: E402
from stream_engine.separators import spleeter  # noqa: E402
from stream_engine.separators.base import SeparatorError  # noqa: E402
from stream_engine.separators.dsp_4stem import Dsp4Stem  # noqa: E402
from stream_engine.separators.hybrid import STEMS, HybridFourStem  # noqa: E402
from stream_engine.separators.onnx_backend import OnnxSeparator  # noqa: E402
from stream_engine.training.export import export_model  # noqa: E402
from stream_engine.training.fixtures import tiny_student  # noqa: E402


def _checkpoint(model, sample_rate):
    return {"kind": "student", "step": 0, "history": [],
            "config": {"sample_rate": sample_rate, "data": "synthetic", "preset": "test", "seed": 0}}


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    out = tmp_path_factory.mktemp("hybrid")
    four = tiny_student(stems=STEMS, n_fft=256, hop=64, ctx_fft=0, asym=True, channels=2)
    export_model(four, _checkpoint(four, 44100), out, "four", formats=("onnx",))
    two = tiny_student(n_fft=256, hop=64, ctx_fft=0, asym=True, channels=2)
    export_model(two, _checkpoint(two, 44100), out, "two", formats=("onnx",))
    return out


def _music(seconds=4.0, sr=44100):
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    voice = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    beat = 0.4 * rng.standard_normal(t.size) * (np.mod(t, 0.5) < 0.03)
    bass = 0.3 * np.sin(2 * np.pi * 55 * t)
    return np.stack([voice + beat + bass, voice + beat + 0.8 * bass]).astype(np.float32)


@pytest.mark.parametrize("parts", ["dsp-4stem", "four.onnx"])
def test_hybrid_takes_spleeters_vocals_and_splits_the_rest(students, parts):
    x = _music()
    parts_model = "dsp-4stem" if parts == "dsp-4stem" else str(students / parts)
    hybrid = HybridFourStem("quality", parts=parts_model)
    alone = spleeter.SpleeterSeparator("quality")
    inner = Dsp4Stem("live", sample_rate=44100) if parts == "dsp-4stem" else OnnxSeparator.from_path(parts_model)
    assert hybrid.spec.stems == STEMS and hybrid.spec.latency == alone.spec.latency + inner.spec.latency
    got = Framer(hybrid, channels=2, trim=True).push(x)  # (4, 2, n - latency)
    n = got.shape[-1]
    assert n > x.shape[-1] // 2
    # the four stems sum to the input, high band included
    np.testing.assert_allclose(got.sum(0), x[:, :n], atol=1e-4)
    # vocals: Spleeter's own, streamed alone with the same framing
    vocals = Framer(alone, channels=2, trim=True).push(x)[0]
    np.testing.assert_allclose(got[0], vocals[:, :n], atol=1e-5)
    # drums and bass: the parts separator's, of the input less Spleeter's vocals (after the
    # first 0.1 s: in the chain the parts separator also hears Spleeter's smear before the start)
    rest = x[:, : vocals.shape[-1]] - vocals
    split = Framer(inner, channels=2, trim=True).push(rest)
    np.testing.assert_allclose(got[1:3, :, 4410:], split[1:3, :, 4410:n], atol=1e-4)
    assert np.abs(got[1]).max() > 1e-3 and np.abs(got[2]).max() > 1e-3


def test_hybrid_refuses_a_two_stem_model(students):
    with pytest.raises(SeparatorError, match="not \\['vocals', 'drums', 'bass', 'other'\\]"):
        HybridFourStem("quality", parts=students / "two.onnx")
    with pytest.raises(SeparatorError, match="no such four-stem model"):
        HybridFourStem("quality", parts=students / "missing.onnx")


def test_hybrid_is_listed_with_four_stems_and_separates_a_file(tmp_path):
    """`stemstream models` lists it where Spleeter is installed; `separate` writes its four stems."""
    import soundfile as sf

    from stream_engine.cli import main
    from stream_engine.separators.registry import available, load_separator, model_stems

    assert "hybrid-4stem" in available()
    assert model_stems("hybrid-4stem", "quality") == STEMS
    assert load_separator("hybrid-4stem", "offline").spec.stems == STEMS
    song = tmp_path / "song.wav"
    sf.write(song, _music(3.0).T, 44100)
    assert main(["separate", str(song), "--model", "hybrid-4stem", "--out", str(tmp_path / "out")]) == 0
    stems = {s: sf.read(tmp_path / "out" / "song" / f"{s}.wav", dtype="float32")[0] for s in STEMS}
    mix = sf.read(song, dtype="float32")[0]
    total = sum(stems.values())
    assert total.shape == mix.shape and np.abs(total - mix).max() < 1e-3
