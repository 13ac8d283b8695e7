"""The counterfactual diffusion separator (issue 28): sampler, stems, card/registry, training, loading.

A tiny network (a few thousand parameters) stands in for the bundled one where the test is
about the machinery; the bundled weights are loaded where the test is about what ships.
"""

from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from stream_engine.separators import registry  # noqa: E402
from stream_engine.separators.base import SeparatorError  # noqa: E402
from stream_engine.separators.diffusion import DiffusionSeparator  # noqa: E402
from stream_engine.training import diffusion as D  # noqa: E402

TINY = {"fold": 8, "channels": [8, 8, 16, 16], "t_dim": 16, "heads": 2, "frames": 16}


def _tiny_weights(tmp_path, name="tiny-diffusion", seed=0, frames=48):
    """A tiny model saved as the separator reads it, with a card beside it; returns the .pt path."""
    torch.manual_seed(seed)
    model = D.build_model(TINY)
    with torch.no_grad():  # the output layer starts at zero: give it weights so outputs depend on input
        for p in model.out.parameters():
            p.normal_(0, 0.05)
    path = tmp_path / f"{name}.pt"
    D.save_checkpoint(path, {"kind": D.KIND, "model_cfg": TINY, "model": model.state_dict(), "step": 0})
    hop = D.HOP
    fr = {"frames": frames, "hop_frames": 24, "fade_frames": 4, "lookahead_frames": 8, "chunk_overlap": 4}
    window = (frames - 1) * hop + D.N_FFT
    card = {"name": name, "format": "diffusion", "sample_rate": 44100, "stems": ["vocals", "accompaniment"],
            "channels": 1, "window": window, "hop": 24 * hop, "lookahead": 8 * hop, "fade": 4 * hop,
            "stateful": False, "output_span": "window",
            "profiles": {"offline": dict(fr, window=window, hop=24 * hop, lookahead=8 * hop, fade=4 * hop)},
            "sampler": {"steps": 2, "samples": 2, "mask": "ratio", "seed": 3},
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def _music(seconds=3.0, rate=44100, channels=2, seed=1):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    x = np.stack([tone + 0.05 * rng.standard_normal(t.size) for _ in range(channels)])
    return x.astype(np.float32)


def test_ddim_sampler_is_deterministic_per_seed_and_differs_across_seeds():
    torch.manual_seed(0)
    model = D.build_model(TINY).eval()
    with torch.no_grad():
        for p in model.out.parameters():
            p.normal_(0, 0.05)
    mag = torch.rand(2, D.BINS, TINY["frames"])
    cond, _, _ = D.features(mag)
    a = D.ddim_sample(model, cond, steps=3, seed=5)
    b = D.ddim_sample(model, cond, steps=3, seed=5)
    c = D.ddim_sample(model, cond, steps=3, seed=6)
    assert a.shape == (2, 1, D.BINS, TINY["frames"])
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_target_form_round_trips_to_the_accompaniment_magnitude():
    mix = torch.rand(3, D.BINS, 16) * 2.0 + 1e-3
    acc = mix * torch.rand_like(mix)
    acc[0, :10] = mix[0, :10] * 3.0  # louder than the mixture (phase cancellation): clipped to the mixture
    cond, weight, x0 = D.features(mix, acc)
    assert float(x0.min()) >= -1.0 and float(x0.max()) <= 1.0
    assert torch.allclose(D.x0_to_ratio(x0)[1:] * mix[1:], acc[1:], atol=1e-5)
    assert torch.allclose(D.x0_to_ratio(x0)[0, :10], torch.ones(10, 16))
    # the loss weight follows the mixture's level and averages to one per window
    assert torch.allclose(weight.mean(dim=(1, 2, 3)), torch.ones(3), atol=1e-5)
    loud = mix[0] == mix[0].max()
    assert float(weight[0, 0][loud].min()) > float(weight[0, 0].mean())


def test_separator_stems_sum_to_the_mixture_and_repeat_with_the_seed(tmp_path):
    from stream_engine.offline import separate_array

    path = _tiny_weights(tmp_path)
    mix = _music()
    sep = registry.load_separator(str(path), "offline", sample_rate=44100)
    assert isinstance(sep, DiffusionSeparator) and sep.steps == 2 and sep.samples == 2
    out = separate_array(sep, mix, 44100, "offline")
    assert {"vocals", "accompaniment"} <= set(out)
    total = out["vocals"] + out["accompaniment"]
    assert np.max(np.abs(total - mix)) < 1e-4
    assert np.std(out["vocals"]) > 1e-4  # the mask is not all ones: something was taken out
    sep2 = registry.load_separator(str(path), "offline", sample_rate=44100)
    again = separate_array(sep2, mix, 44100, "offline")
    assert np.array_equal(out["vocals"], again["vocals"])


def test_vocals_lie_within_the_mixture_per_bin(tmp_path):
    """Mask in [0, 1]: the vocals' STFT never exceeds the mixture's (ratio and Wiener)."""
    path = _tiny_weights(tmp_path)
    card = json.loads(path.with_suffix(".json").read_text())
    for mask in ("ratio", "wiener"):
        sep = DiffusionSeparator(path, card, "offline", mask=mask, steps=1, samples=1)
        mag = torch.rand(1, D.BINS, sep.frames)
        m = sep.accompaniment_mask(mag)
        assert m.shape == mag.shape and float(m.min()) >= 0.0 and float(m.max()) <= 1.0


def test_realtime_profiles_are_refused_with_a_clear_error(tmp_path):
    path = _tiny_weights(tmp_path)
    with pytest.raises(SeparatorError, match="offline"):
        registry.load_separator(str(path), "live", sample_rate=48000)


def test_bundled_model_is_listed_and_loads_for_offline(research_models):
    models = registry.bundled_models()
    assert "stemstream-diffusion" in models
    card = models["stemstream-diffusion"]
    assert card["path"].endswith("stemstream-diffusion.pt") and card["format"] == "diffusion"
    assert "stemstream-diffusion" in registry.available()
    assert registry.model_stems("stemstream-diffusion", "offline") == ("vocals", "accompaniment")
    sep = registry.load_separator("stemstream-diffusion", "offline", sample_rate=44100)
    assert sep.spec.sample_rate == 44100 and sep.spec.channels == 1
    assert sep.steps == card["sampler"]["steps"] and sep.samples == card["sampler"]["samples"]


def test_bundled_weights_load_with_weights_only_and_match_the_card(research_models):
    bundled = registry.bundled_models()["stemstream-diffusion"]
    ck = torch.load(bundled["path"], map_location="cpu", weights_only=True)
    assert ck["kind"] == D.KIND
    model = D.build_model(ck["model_cfg"])
    model.load_state_dict(ck["model"])
    assert D.param_count(model) == bundled["parameters"]
    if bundled.get("sha256"):
        assert hashlib.sha256(open(bundled["path"], "rb").read()).hexdigest() == bundled["sha256"]


class _Payload:
    def __reduce__(self):  # runs code when unpickled by a full (non weights-only) load
        return (print, ("pwned",))


def test_weights_that_need_code_to_load_are_refused(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"kind": D.KIND, "model_cfg": TINY, "model": {}, "x": _Payload()}, bad)
    with pytest.raises(ValueError, match="refused"):
        D.load_weights(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps({"kind": D.KIND}))
    with pytest.raises(ValueError, match="junk.pt"):
        D.load_weights(junk)


def test_weights_that_do_not_match_their_card_hash_are_refused(tmp_path):
    path = _tiny_weights(tmp_path)
    card = json.loads(path.with_suffix(".json").read_text())
    card["sha256"] = "0" * 64
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(SeparatorError, match="does not match"):
        registry.load_separator(str(path), "offline", sample_rate=44100)


def test_training_steps_reduce_the_loss_on_a_toy_batch():
    torch.manual_seed(0)
    model = D.build_model(TINY)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    n = D.excerpt_samples(TINY["frames"])
    rng = np.random.default_rng(0)
    t = np.arange(n) / 44100
    acc = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in (110, 220, 330, 440)]).astype(np.float32)
    voc = (0.1 * rng.standard_normal((4, n))).astype(np.float32)
    cond, weight, x0 = D.batch_tensors(voc, acc)

    def eval_loss():
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return float(np.mean([float(D.diffusion_loss(model, cond, x0, g, weight)) for _ in range(8)]))

    before = eval_loss()
    gen = torch.Generator().manual_seed(1)
    for _ in range(40):
        loss = D.diffusion_loss(model, cond, x0, gen, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.7 * before, (before, after)


def test_training_run_checkpoints_and_resumes(tmp_path):
    """Two short runs into one folder: the second resumes at the first's step (weights_only load)."""
    data = tmp_path / "data"
    rate = 16000
    import soundfile as sf

    rng = np.random.default_rng(0)
    for sub in ("eif/train/a", "mir1k/train/b"):
        d = data / sub
        d.mkdir(parents=True)
        sf.write(d / "vocals.flac", (0.1 * rng.standard_normal(rate * 2)).astype(np.float32), rate)
        sf.write(d / "accompaniment.flac", (0.1 * rng.standard_normal(rate * 2)).astype(np.float32), rate)
    (data / "instrumental" / "c").mkdir(parents=True)
    sf.write(data / "instrumental" / "c" / "mixture.flac", (0.1 * rng.standard_normal(rate * 2)).astype(np.float32),
             rate)
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--batch", "2", "--cfg", json.dumps(TINY),
            "--log-every", "1"]
    assert D.main(args + ["--steps", "2"]) == 0
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ck["step"] == 2 and set(ck) >= {"model", "ema", "optim", "step"}
    assert D.main(args + ["--steps", "3"]) == 0
    log = (out / "train.log").read_text()
    assert "resumed from" in log and "at step 2" in log
    assert torch.load(out / "last.pt", map_location="cpu", weights_only=True)["step"] == 3
    model, _ = D.load_weights(out / "last.pt")  # the EMA weights
    assert D.param_count(model) > 0


def test_a_held_out_source_is_never_read_and_an_unknown_one_is_refused(tmp_path):
    """The instrument-independence run trains without one family: its audio must not reach the pool."""
    import soundfile as sf

    rate = 16000
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    for sub in ("eif/train/a", "mir1k/train/b"):
        d = data / sub
        d.mkdir(parents=True)
        for stem in ("vocals", "accompaniment"):
            sf.write(d / f"{stem}.flac", (0.1 * rng.standard_normal(rate)).astype(np.float32), rate)
    (data / "instrumental" / "c").mkdir(parents=True)
    sf.write(data / "instrumental" / "c" / "mixture.flac", (0.1 * rng.standard_normal(rate)).astype(np.float32), rate)
    lines = []
    pool, info = D.load_pool(data, None, 0, log=lines.append, hold_out=("eif/train",))
    assert set(info) == {"instrumental", "mir1k/train"}
    assert {t["name"] for _, _, ts in pool.sources for t in ts} == {"b", "c"}
    assert abs(pool.p.sum() - 1) < 1e-9 and any("held out" in x and "eif/train" in x for x in lines)
    with pytest.raises(ValueError, match="eif/valid"):
        D.load_pool(data, None, 0, log=lines.append, hold_out=("eif/valid",))
