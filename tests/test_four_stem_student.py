"""The streaming student for any number of stems: a mask per stem but the last, streaming
through the engine like the whole signal, a start from a two-stem student, and training data
where a source holds true references for some stems only."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from stream_engine.separators.framer import Framer  # noqa: E402
from stream_engine.separators.onnx_backend import OnnxSeparator  # noqa: E402
from stream_engine.training import data as D  # noqa: E402
from stream_engine.training.export import export_model  # noqa: E402
from stream_engine.training.fixtures import fake_checkpoint, tiny_student  # noqa: E402
from stream_engine.training.train import evaluate, widen_stems  # noqa: E402

FOUR = ("vocals", "drums", "bass", "other")
TINY = dict(n_fft=128, ctx_fft=0, asym=True, channels=2)


def _stereo(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)])
    return (x + 0.1 * rng.standard_normal((2, n))).astype(np.float32)


@pytest.fixture(scope="module")
def four_stem_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("four")
    m = tiny_student(stems=FOUR, **TINY)
    export_model(m, fake_checkpoint(m, "student"), out, "tiny-four", formats=("onnx", "int8"))
    return m, out


def test_four_stem_student_streams_like_the_whole_signal(four_stem_files):
    m, out = four_stem_files
    card = json.loads((out / "tiny-four.json").read_text())
    assert card["stems"] == list(FOUR)
    n = 16 * 300
    x = _stereo(n)
    with torch.no_grad():
        whole = m(torch.from_numpy(x)[None])[0].numpy()  # (4, 2, n)
    assert whole.shape == (4, 2, n)
    # the stems sum to the input, delayed by the model's latency
    np.testing.assert_allclose(whole.sum(0)[:, m.latency:], x[:, : n - m.latency], atol=1e-4)
    # each masked stem is its own estimate, not a copy of another
    assert min(np.abs(whole[i] - whole[j]).max() for i in range(4) for j in range(i + 1, 4)) > 1e-3
    fr = Framer(OnnxSeparator.from_path(out / "tiny-four.onnx"), channels=2)
    rng = np.random.default_rng(3)
    outs, pos = [], 0
    while pos < n:
        b = int(min(rng.integers(1, 90), n - pos))
        outs.append(fr.push(x[:, pos: pos + b]))
        pos += b
    np.testing.assert_allclose(np.concatenate(outs, -1), whole, atol=1e-4)
    quant = Framer(OnnxSeparator.from_path(out / "tiny-four-int8.onnx"), channels=2).push(x)
    assert quant.shape == (4, 2, n) and np.isfinite(quant).all()


def test_two_stem_configs_and_weights_are_unchanged():
    """A two-stem student keeps its config keys and output size (bundled checkpoints load)."""
    m = tiny_student(**TINY)
    assert "stems" not in m.cfg and m.out.out_features == 2 * m.n_bins * 2
    assert tiny_student(stems=("vocals", "accompaniment"), **TINY).cfg == m.cfg
    with pytest.raises(ValueError, match="at least two stems"):
        tiny_student(stems=("vocals",), **TINY)


def test_a_four_stem_student_starts_from_a_two_stem_one():
    """widen_stems keeps the two-stem student's vocals exactly; the new stems split the rest."""
    two = tiny_student(seed=1, **TINY)
    four = tiny_student(seed=2, stems=FOUR, **TINY)
    widen_stems(four, two.state_dict(), ["vocals", "accompaniment"])
    x = torch.from_numpy(_stereo(16 * 100, seed=4))[None]
    with torch.no_grad():
        a, b = two(x)[0], four(x)[0]
    np.testing.assert_allclose(b[0].numpy(), a[0].numpy(), atol=1e-5)  # vocals
    np.testing.assert_allclose(b[1:].sum(0).numpy(), a[1].numpy(), atol=1e-4)  # drums + bass + other
    assert np.abs(b[1].numpy()).max() > 1e-3
    wrong = tiny_student(stems=FOUR, **dict(TINY, n_fft=256))
    with pytest.raises(ValueError, match="does not fit"):
        widen_stems(wrong, two.state_dict(), ["vocals", "accompaniment"])


def _write_track(root, name, stems, seconds=1.0, sr=16000):
    import soundfile as sf

    d = root / name
    d.mkdir(parents=True)
    for stem, value in stems.items():
        sf.write(d / f"{stem}.wav", np.full(int(seconds * sr), value, np.float32), sr)


def test_a_source_supplies_only_the_stems_it_holds_true(tmp_path):
    """A song whose bass sits in `other` (eif) gives vocals and drums only; bass and other come
    from sources that hold them, and a folder without some stems needs no silent files."""
    _write_track(tmp_path / "eif", "song", {"vocals": 0.11, "drums": 0.12, "bass": 0.9, "other": 0.9})
    _write_track(tmp_path / "gm", "render", {"drums": 0.02, "bass": 0.03, "other": 0.04})
    _write_track(tmp_path / "voices", "clip", {"vocals": 0.05})
    tracks = D.load_sources([
        {"path": str(tmp_path / "eif"), "share": 0.5, "stems": ["vocals", "drums"]},
        {"path": str(tmp_path / "gm"), "share": 0.3, "silent": ["vocals"]},
        {"path": str(tmp_path / "voices"), "share": 0.2, "stems": ["vocals"]},
    ], stems=FOUR, sample_rate=16000, channels=2)
    clip = next(t for t in tracks if t.name == "clip")
    assert clip.stems["bass"].shape == (2, 16000) and clip.stems["bass"].strides[-1] == 0  # no memory
    sampler = D.StemSampler(tracks, FOUR, 4000, D.AugmentConfig(gain_db=(0.0, 0.0), polarity=0.0), seed=0)
    seen = {s: set() for s in FOUR}
    for _ in range(20):
        _, stems = sampler.draw(8)
        for i, s in enumerate(FOUR):
            seen[s] |= {round(float(v), 2) for v in np.unique(np.abs(stems[:, i]))}
    assert 0.9 not in seen["bass"] | seen["other"]  # never the untrusted stems
    assert {0.03} <= seen["bass"] and {0.11, 0.05, 0.0} <= seen["vocals"] and {0.12, 0.02} <= seen["drums"]
    with pytest.raises(ValueError, match="true 'bass'"):
        D.StemSampler([t for t in tracks if t.name != "render"], FOUR, 4000)
    with pytest.raises(ValueError, match="does not separate"):
        D.load_sources([{"path": str(tmp_path / "voices"), "stems": ["guitar"]}], stems=FOUR, sample_rate=16000)


def test_validation_does_not_score_a_silent_reference():
    m = tiny_student(stems=FOUR, **TINY)
    mix = _stereo(16 * 200)
    ref = np.stack([mix * 0.5, mix * 0.5, np.zeros_like(mix), np.zeros_like(mix)])
    res = evaluate(m, [("t", mix, ref)], FOUR)
    assert res["tracks"]["t"]["bass"] is None and res["tracks"]["t"]["other"] is None
    assert set(res["mean"]) == {"vocals", "drums"} and np.isfinite(res["mean"]["drums"])
