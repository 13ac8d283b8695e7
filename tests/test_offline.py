"""``stemstream separate`` / ``eval`` on real files, good and bad."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_engine.cli import main


def tone(rate, seconds=1.0, channels=2):
    t = np.arange(int(rate * seconds)) / rate
    chans = [0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]
    return np.stack(chans, axis=1).astype(np.float32)


def separate(tmp_path, *inputs, model="passthrough", extra=()):
    out = tmp_path / "out"
    code = main(["separate", *map(str, inputs), "--out", str(out), "--model", model, "--quiet", *extra])
    return code, out


def leftovers(folder: Path):
    return [p for p in folder.rglob("*") if p.name.endswith(".partial")] if folder.exists() else []


@pytest.mark.parametrize("rate,channels", [(44100, 2), (48000, 1), (8000, 2), (96000, 2), (44100, 6)])
def test_output_is_aligned_and_complete(tmp_path, rate, channels):
    src = tmp_path / "song.wav"
    x = tone(rate, 1.3, channels)
    sf.write(src, x, rate, subtype="FLOAT")
    code, out = separate(tmp_path, src)
    assert code == 0
    for name in ("vocals", "accompaniment", "instrumental", "karaoke"):
        y, r = sf.read(out / "song" / f"{name}.wav", dtype="float32", always_2d=True)
        assert r == rate and y.shape == x.shape, name
    vocals, _ = sf.read(out / "song" / "vocals.wav", dtype="float32", always_2d=True)
    assert np.max(np.abs(vocals - x)) <= 1e-6  # passthrough: latency removed, sample for sample
    assert not leftovers(out)


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_reads_compressed_formats(tmp_path, fmt):
    src = tmp_path / f"song.{fmt}"
    try:
        sf.write(src, tone(44100, 1.0), 44100, format=fmt.upper())
    except (sf.LibsndfileError, TypeError, ValueError) as exc:
        pytest.skip(f"this libsndfile cannot write {fmt}: {exc}")
    code, out = separate(tmp_path, src, model="dsp-center", extra=["--format", "flac"])
    assert code == 0
    y, r = sf.read(out / "song" / "karaoke.flac", always_2d=True)
    assert r == 44100 and y.shape[1] == 2 and abs(len(y) - sf.info(str(src)).frames) == 0


def test_nan_and_inf_become_silence_with_a_warning(tmp_path, capsys):
    x = tone(44100)
    x[100:200] = np.nan
    x[300] = np.inf
    src = tmp_path / "bad_samples.wav"
    sf.write(src, x, 44100, subtype="FLOAT")
    code, out = separate(tmp_path, src)
    assert code == 0
    assert "NaN/inf" in capsys.readouterr().err
    vocals, _ = sf.read(out / "bad_samples" / "vocals.wav", dtype="float32")
    assert np.all(np.isfinite(vocals)) and np.all(vocals[100:200] == 0)


def make_bad_files(tmp_path):
    good = tmp_path / "good.flac"
    sf.write(good, tone(44100, 2.0), 44100)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("these are not samples\n" * 50)
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros((0, 2), np.float32), 44100)
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    return {"empty": empty, "not audio": text, "zero length": zero, "truncated": truncated,
            "missing": tmp_path / "missing.wav"}


def test_bad_inputs_get_clear_errors_and_leave_no_partial_files(tmp_path, capsys):
    bad = make_bad_files(tmp_path)
    good = tmp_path / "fine.wav"
    sf.write(good, tone(44100), 44100)
    code, out = separate(tmp_path, good, *bad.values())
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (out / "fine" / "vocals.wav").exists()  # the good file is still separated
    for label in ("empty", "not audio", "zero length", "missing"):
        assert str(bad[label]) in err, label
    truncated_ok = (out / "truncated" / "vocals.wav").exists()
    assert truncated_ok or str(bad["truncated"]) in err  # a clear error, or what could be read
    assert code == 4 + (not truncated_ok)  # the exit status counts the failed inputs (issue 18)
    for label in ("empty", "not audio", "zero length", "missing"):
        assert not (out / bad[label].stem).exists() or not any((out / bad[label].stem).iterdir())
    assert not leftovers(out)


def test_failed_track_keeps_earlier_result(tmp_path):
    src = tmp_path / "song.wav"
    sf.write(src, tone(44100), 44100)
    code, out = separate(tmp_path, src)
    before = (out / "song" / "vocals.wav").read_bytes()
    src.write_bytes(b"RIFF....garbage")
    code, out = separate(tmp_path, src)
    assert code == 1  # one input failed
    assert (out / "song" / "vocals.wav").read_bytes() == before
    assert not leftovers(out)


def test_missing_and_corrupt_models_are_clear_errors(tmp_path, capsys):
    src = tmp_path / "song.wav"
    sf.write(src, tone(44100), 44100)
    assert separate(tmp_path, src, model=str(tmp_path / "nope.onnx"))[0] == 2
    assert "not found" in capsys.readouterr().err
    corrupt = tmp_path / "broken.onnx"
    corrupt.write_bytes(b"\x08\x01garbage that is not a model" * 10)
    code, out = separate(tmp_path, src, model=str(corrupt))
    err = capsys.readouterr().err
    assert code == 2 and "broken" in err and "Traceback" not in err
    assert not out.exists() or not any(out.rglob("*.wav"))
    assert separate(tmp_path, src, model=str(tmp_path / "model.xyz"))[0] == 2


def test_cli_entry_point_runs_the_demo(tmp_path):
    result = subprocess.run([sys.executable, "-m", "stream_engine.cli", "separate", "--demo", "--model", "dsp-center",
                             "--out", str(tmp_path), "--quiet"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "x real time" in result.stdout and "latency" in result.stdout
    y, rate = sf.read(tmp_path / "demo_song" / "karaoke.wav")
    assert rate == 44100 and len(y) == sf.info(str(Path(__file__).parents[1] / "stream_engine/demo/demo_song.flac")).frames


def test_eval_scores_a_folder_against_its_stems(tmp_path):
    """SDR through the engine: passthrough's vocals = mixture; its accompaniment is silence."""
    track = tmp_path / "set" / "track1"
    track.mkdir(parents=True)
    rng = np.random.default_rng(0)
    vocals = 0.1 * rng.standard_normal((44100, 2)).astype(np.float32)
    drums = 0.1 * rng.standard_normal((44100, 2)).astype(np.float32)
    sf.write(track / "vocals.wav", vocals, 44100, subtype="FLOAT")
    sf.write(track / "drums.wav", drums, 44100, subtype="FLOAT")
    from stream_engine.evaluate import evaluate
    from stream_engine.separators.registry import load_separator

    results = evaluate(tmp_path, lambda rate: load_separator("passthrough", "live"), "live", progress=False)
    scores = results["tracks"]["set/track1"]
    assert abs(scores["vocals"] - 0.0) < 0.05  # equal energy: mixture as estimate scores 0 dB
    assert abs(scores["accompaniment"] - 0.0) < 1e-3  # silence as estimate: exactly 0 dB
    assert results["mean"]["vocals"] == pytest.approx(scores["vocals"])


def test_key_change_and_effects_offline_keep_length_and_shift_the_accompaniment(tmp_path):
    rate = 44100
    t = np.arange(2 * rate) / rate
    side = 0.3 * np.sin(2 * np.pi * 440 * t)  # out of phase: dsp-center calls it accompaniment
    src = tmp_path / "side.wav"
    sf.write(src, np.stack([side, -side], axis=1), rate, subtype="FLOAT")
    code, out = separate(tmp_path, src, model="dsp-center", extra=["--key", "12", "--fx", "vocals=vocal"])
    assert code == 0
    y, _ = sf.read(out / "side" / "instrumental.wav", always_2d=True)
    assert len(y) == len(t)
    spectrum = np.abs(np.fft.rfft(y[rate // 2 : -rate // 4, 0]))
    peak = np.fft.rfftfreq(len(y[rate // 2 : -rate // 4]), 1 / rate)[np.argmax(spectrum)]
    assert abs(peak - 880) < 880 * 0.01


def test_bad_effect_assignment_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "song.wav"
    sf.write(src, tone(44100), 44100)
    assert separate(tmp_path, src, extra=["--fx", "vocals"])[0] == 2
    assert "STEM=PRESET" in capsys.readouterr().err
    assert separate(tmp_path, src, extra=["--fx", "drums=vocal"])[0] == 2
    assert "drums" in capsys.readouterr().err


def test_eval_mixture_of_vocals_and_accompaniment_folder(tmp_path):
    """MIR-1K layout (vocals + accompaniment, no mixture): the mixture is their sum."""
    track = tmp_path / "clip"
    track.mkdir()
    rng = np.random.default_rng(1)
    for stem in ("vocals", "accompaniment"):
        sf.write(track / f"{stem}.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000, subtype="FLOAT")
    from stream_engine.evaluate import evaluate
    from stream_engine.separators.registry import load_separator

    scores = evaluate(tmp_path, lambda rate: load_separator("passthrough", "live"), "live", progress=False)["tracks"]["clip"]
    assert abs(scores["vocals"]) < 0.1  # the mixture as the vocal estimate: 0 dB at equal energy
    assert abs(scores["accompaniment"]) < 1e-3


def test_eval_finds_symlinked_track_folders_and_survives_a_link_loop(tmp_path):
    """A subset of a data set made of links is scored; a link back up the tree does not loop."""
    real = tmp_path / "real" / "clip"
    real.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for stem in ("vocals", "accompaniment"):
        sf.write(real / f"{stem}.wav", 0.1 * rng.standard_normal(8000).astype(np.float32), 16000, subtype="FLOAT")
    subset = tmp_path / "subset"
    subset.mkdir()
    (subset / "linked clip").symlink_to(real, target_is_directory=True)
    (subset / "loop").symlink_to(subset, target_is_directory=True)
    from stream_engine.evaluate import evaluate, find_tracks
    from stream_engine.separators.registry import load_separator

    assert find_tracks(subset) == [subset / "linked clip"]
    results = evaluate(subset, lambda rate: load_separator("passthrough", "live"), "live", progress=False)
    assert list(results["tracks"]) == ["linked clip"] and not results["failed"]
