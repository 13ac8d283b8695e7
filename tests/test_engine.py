"""Framing, alignment and mixing through the real pipeline (no device)."""

import numpy as np
import pytest

from stream_engine.separators.framer import crossfade_halves
from stream_engine.mixer import Mixer, Router, parse_route
from stream_engine.offline import separate_array
from stream_engine.params import Params
from stream_engine.pipeline import Pipeline
from stream_engine.profiles import PROFILES, get_profile
from stream_engine.realtime import RealtimeEngine, run_paced
from stream_engine.ring import Ring
from stream_engine.separators.base import SeparatorError, SeparatorSpec, group_channels
from stream_engine.separators.passthrough import Passthrough
from stream_engine.separators.registry import load_separator

BLOCKS = [32, 64, 100, 256, 1000, 4096]


class Split16k(Passthrough):
    """A 16 kHz mono 'model': vocals = 1/4 of the input, accompaniment = 3/4."""

    def __init__(self):
        self.spec = SeparatorSpec("split16k", ("vocals", "accompaniment"), window=1280, hop=1024, fade=256,
                                  sample_rate=16000, channels=1)

    def separate(self, window):
        seg = self.segment_of(window)
        return np.stack([0.25 * seg, 0.75 * seg], axis=1)


def noise(channels, n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (channels, n)).astype(np.float32)


def run_in_blocks(pipeline, x, block):
    outs = [pipeline.process(x[:, i : i + block]) for i in range(0, x.shape[1], block)]
    outs.append(pipeline.flush())
    return np.concatenate(outs, axis=2)


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("block", BLOCKS)
def test_passthrough_reconstructs_input_exactly(profile, block):
    x = noise(2, 30011)
    pipeline = Pipeline(load_separator("passthrough", profile), 48000, 2, get_profile(profile), trim=True)
    y = run_in_blocks(pipeline, x, block)
    assert y.shape == (2, 2, x.shape[1])
    assert np.max(np.abs(y[0] - x)) <= 1e-6
    assert np.max(np.abs(y[1])) == 0.0


@pytest.mark.parametrize("block", [32, 256, 4096])
def test_passthrough_live_stream_is_input_delayed_by_reported_latency(block):
    x = noise(2, 48000, seed=1).T.copy()
    engine = RealtimeEngine(Pipeline(load_separator("passthrough", "live"), 48000, 2, get_profile("live")), block)
    engine.store.update(lambda p: p.with_(karaoke=False))
    y = run_paced(engine, x, realtime=False)
    delay = engine.latency().samples
    assert engine.stats.misses == 0
    assert np.max(np.abs(y[delay:] - x[: len(y) - delay])) <= 1e-6
    assert np.all(y[:delay] == 0)


def test_algorithmic_latency_leaves_out_the_compute_budget_and_device():
    """DESIGN.md's algorithmic latency holds for infinitely fast compute: budget and device are extra."""
    engine = RealtimeEngine(Pipeline(load_separator("passthrough", "live"), 48000, 2, get_profile("live")), 256,
                            budget=1024)
    report = engine.latency(device_in=0.002, device_out=0.003)
    framer = engine.pipeline.framer_latency
    assert report.algorithmic_samples == 256 + engine.holdback + framer
    assert report.samples == report.algorithmic_samples + (1024 - 256) + round(0.005 * 48000)
    d = report.as_dict()
    assert d["algorithmic_samples"] == report.algorithmic_samples
    assert not d["parts"]["compute budget"]["algorithmic"] and d["parts"]["device block"]["algorithmic"]


def test_crossfade_halves_sum_to_one():
    rise, fall = crossfade_halves(777)
    assert np.max(np.abs(rise + fall - 1.0)) < 1e-7
    assert np.all(np.diff(rise) > 0)


def test_resampled_model_output_is_aligned_with_input():
    """A 16 kHz model in a 44.1 kHz stream: stems line up and sum to the input."""

    rate = 44100
    t = np.arange(rate * 2) / rate
    x = np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 500 * t)]).astype(np.float32) * 0.5
    y = run_in_blocks(Pipeline(Split16k(), rate, 2, get_profile("balanced"), trim=True), x, 1000)
    assert y.shape == (2, 2, x.shape[1])
    core = slice(2000, -2000)  # soxr's filters ring at the edges
    assert np.max(np.abs(y[0][:, core] - 0.25 * x[:, core])) < 1e-2
    assert np.max(np.abs(y.sum(axis=0)[:, core] - x[:, core])) < 1e-2


def test_dsp_center_separates_centre_from_sides_and_sums_to_input():
    rate = 48000
    t = np.arange(rate) / rate
    centre = 0.3 * np.sin(2 * np.pi * 440 * t)
    side = 0.3 * np.sin(2 * np.pi * 660 * t)
    x = np.stack([centre + side, centre - side]).astype(np.float32)  # side is out of phase
    for profile in PROFILES:
        y = separate_array(load_separator("dsp-center", profile, sample_rate=rate), x, rate, profile)
        core = slice(rate // 4, -rate // 4)
        vocals, acc = y["vocals"][:, core], y["accompaniment"][:, core]
        assert np.max(np.abs(vocals + acc - x[:, core])) < 1e-5
        err_v = np.sqrt(np.mean((vocals - centre[core]) ** 2)) / np.sqrt(np.mean(centre[core] ** 2))
        assert err_v < 0.2, (profile, err_v)


def test_group_channels_rule():
    assert group_channels(2, 1) == [(0,), (1,)]
    assert group_channels(6, 2) == [(0, 1), (2, 3), (4, 5)]
    assert group_channels(3, 2) == [(0, 1), (2, 2)]
    assert group_channels(1, 2) == [(0, 0)]
    assert group_channels(4, None) == [(0, 1, 2, 3)]


def test_six_channel_stream_keeps_every_channel():
    x = noise(6, 20000, seed=3)
    y = run_in_blocks(Pipeline(load_separator("passthrough", "live"), 48000, 6, get_profile("live"), trim=True), x, 512)
    assert np.max(np.abs(y[0] - x)) <= 1e-6


def test_spec_rejects_inconsistent_framing():
    with pytest.raises(SeparatorError, match="window"):
        SeparatorSpec("bad", ("vocals",), window=100, hop=100, fade=10)
    with pytest.raises(SeparatorError, match="fade"):
        SeparatorSpec("bad", ("vocals",), window=400, hop=100, fade=200)


def test_mixer_gain_mute_solo_and_karaoke():
    stems = np.stack([np.ones((2, 64)), 2 * np.ones((2, 64))]).astype(np.float32)  # vocals=1, acc=2
    mixer = Mixer(("vocals", "accompaniment"), 2)
    p = Params.for_stems(("vocals", "accompaniment"), karaoke=False)
    assert np.allclose(mixer.mix(stems, p)["main"], 3.0)
    p = p.with_(karaoke=True, guide=0.5)
    buses = mixer.mix(stems, p)  # ramps from 1.0 to 0.5 over the block
    assert buses["main"][0, 0] > 2.5 and np.isclose(buses["main"][0, -1], 2.5)
    assert np.allclose(mixer.mix(stems, p)["main"], 2.5)
    assert np.allclose(mixer.mix(stems, p.with_stem("vocals", solo=True))["main"][:, -1], 0.5)
    assert np.allclose(mixer.mix(stems, p.with_stem("accompaniment", mute=True))["instrumental"][:, -1], 0.0)
    assert np.allclose(buses["karaoke"], 2.5) and np.allclose(buses["instrumental"], 2.0)


def test_router_places_buses_and_parses_routes():
    assert parse_route("vocals=3,4") == ("vocals", [2, 3])
    with pytest.raises(ValueError, match="bad route"):
        parse_route("vocals=0")
    with pytest.raises(ValueError, match="unknown bus"):
        Router({"drums": [0, 1]}, ("vocals", "main"), 2)
    router = Router({"main": [0, 1], "vocals": [2, 3], "accompaniment": [4]}, ("vocals", "accompaniment", "main"), 2)
    buses = {"main": np.ones((2, 8)), "vocals": 2 * np.ones((2, 8)), "accompaniment": np.stack([np.ones(8), 3 * np.ones(8)])}
    out = router.route(buses)
    assert out.shape == (8, 5)
    assert np.allclose(out[:, :2], 1) and np.allclose(out[:, 2:4], 2) and np.allclose(out[:, 4], 2.0)
    dry = router.dry_matrix()
    assert dry[0, 0] == 1 and dry[2].sum() == 0  # a stem channel falls silent on a miss


def test_ring_wraps_and_drops_late_frames():
    ring = Ring(1, 8)
    assert ring.write(np.arange(6, dtype=np.float32)[:, None]) == 6
    out = np.zeros((4, 1), np.float32)
    assert ring.read_into(out) == 4 and out[:, 0].tolist() == [0, 1, 2, 3]
    assert ring.write(np.arange(6, 12, dtype=np.float32)[:, None]) == 6  # wraps
    out = np.zeros((8, 1), np.float32)
    assert ring.read_into(out) == 8 and out[:, 0].tolist() == list(range(4, 12))
    assert ring.write(np.ones((20, 1), np.float32)) == 8  # the rest is an overflow
    late = Ring(1, 16)
    late.read_into(np.zeros((4, 1), np.float32), advance=4)  # consumer moved on with nothing there
    assert late.write_dropping_late(np.arange(6, dtype=np.float32)[:, None]) == 4
    out = np.zeros((2, 1), np.float32)
    assert late.read_into(out) == 2 and out[:, 0].tolist() == [4, 5]


@pytest.mark.parametrize("rate", [44100, 48000])
def test_full_band_stems_sum_to_input_offline(rate):
    """The band above the model's 8 kHz is separated by stereo image and not lost."""
    x = noise(2, rate, seed=5) * 0.5
    y = run_in_blocks(Pipeline(Split16k(), rate, 2, get_profile("balanced"), trim=True), x, 4096)
    assert y.shape == (2, 2, x.shape[1])
    core = slice(4000, -4000)
    assert np.max(np.abs(y.sum(axis=0)[:, core] - x[:, core])) < 1e-3
    high = np.fft.rfft(y[1, 0, core])[len(np.fft.rfftfreq(y[:, :, core].shape[2], 1 / rate)) * 9 // 10 :]
    assert np.mean(np.abs(high)) > 1.0  # accompaniment keeps content near Nyquist


def test_full_band_live_stream_is_input_delayed_by_reported_latency():
    rate = 48000
    x = noise(2, rate, seed=6) * 0.5
    pipeline = Pipeline(Split16k(), rate, 2, get_profile("live"))
    y = np.concatenate([pipeline.process(x[:, i : i + 256]) for i in range(0, rate, 256)], axis=2).sum(axis=0)
    d = pipeline.framer_latency
    core = slice(8000, y.shape[1] - 2000)
    shifted = x[:, core.start - d : core.stop - d]
    assert np.max(np.abs(y[:, core] - shifted)) < 1e-3
