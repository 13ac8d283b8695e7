"""Per-stem effect chains with real Pedalboard effects and a real VST3 bundle."""

import os

import numpy as np
import pytest

from plugins.effects import EffectChain, StemEffects, list_presets, load_preset
from stream_engine.params import Params

SR = 48000
ZAM = "/usr/lib/vst3/ZamCompX2.vst3"


def _music(seconds=1.5, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    n = int(SR * seconds)
    t = np.arange(n) / SR
    env = (np.sin(2 * np.pi * 2 * t) > 0).astype(np.float32)  # bursts exercise the dynamics
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * env + 0.1 * rng.standard_normal(n)
    return np.stack([x * (1 + 0.1 * c) for c in range(channels)]).astype(np.float32)


def _stream(chain, x, block):
    return np.concatenate([chain.process(x[:, i:i + block]) for i in range(0, x.shape[1], block)], axis=1)


@pytest.mark.parametrize("preset", ["vocal", "radio", "mic-vocal"])
def test_streaming_equals_whole_signal(preset):
    x = _music()
    whole = EffectChain.from_preset(preset, SR, 2).process(x)
    assert np.abs(whole).max() > 0.01
    for block in (64, 256, 1000):
        streamed = _stream(EffectChain.from_preset(preset, SR, 2), x, block)
        assert streamed.shape == x.shape
        np.testing.assert_allclose(streamed, whole, atol=1e-6, err_msg=f"{preset} block {block}")


def test_vst3_in_chain():
    if not os.path.isdir(ZAM):
        pytest.skip(f"{ZAM} not installed (Debian package zam-plugins)")
    x = _music()
    chain = EffectChain.from_preset("vocal-vst3", SR, 2)
    assert chain.errors == []
    assert chain.slots[2].plugin is not None and "Zam" in chain.slots[2].plugin.name
    streamed = _stream(chain, x, 256)
    whole = EffectChain.from_preset("vocal-vst3", SR, 2).process(x)
    assert np.isfinite(streamed).all() and np.abs(streamed).max() > 0.01
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    # the VST3 does something: a hard compressor changes the level
    dry = _stream(EffectChain.from_preset("vocal", SR, 2), x, 256)
    assert np.abs(streamed - dry).max() > 1e-3
    # parameters reach the plugin through Params.fx
    stage = StemEffects(["vocals", "accompaniment"], {"vocals": EffectChain.from_preset("zam-comp", SR, 2)}, SR, 2)
    p = Params.for_stems(["vocals", "accompaniment"]).with_fx("vocals", 0, "threshold_db", -30.0)
    stage.process(np.stack([x[:, :256], x[:, :256]]), p)
    assert stage.chains["vocals"].slots[0].plugin.threshold_db == pytest.approx(-30.0, abs=0.5)
    assert stage.errors == []


def test_bad_plugin_is_bypassed_with_message(caplog):
    x = _music(0.2)
    effects = [
        {"type": "vst3", "path": "/nonexistent/NoSuch.vst3"},
        {"type": "NoSuchEffect"},
        {"type": "Gain", "params": {"gain_db": -6.0}},
    ]
    chain = EffectChain(effects, SR, 2)
    assert len(chain.errors) == 2
    assert "NoSuch.vst3" in chain.errors[0] and "could not load" in chain.errors[0]
    assert "NoSuchEffect" in chain.errors[1]
    assert "bypassed" in caplog.text
    y = _stream(chain, x, 256)
    np.testing.assert_allclose(y, x * 10 ** (-6 / 20), atol=1e-5)  # the good slot still runs


def test_plugin_raising_while_processing_is_bypassed():
    if not os.path.isdir(ZAM):
        pytest.skip(f"{ZAM} not installed (Debian package zam-plugins)")
    chain = EffectChain.from_preset("zam-comp", SR, 2)
    x = _music(0.1)
    # the stereo VST3 raises on a 3-channel block: bypassed with a message, not a crash
    x3 = np.concatenate([x, x[:1]])
    y = chain.process(x3)
    np.testing.assert_array_equal(y, x3)
    assert chain.errors and "raised while processing" in chain.errors[0] and "ZamCompX2" in chain.errors[0]
    np.testing.assert_array_equal(chain.process(x), x)  # stays bypassed


def test_latency_compensation_keeps_stems_aligned():
    delay = {"type": "Delay", "params": {"delay_seconds": 0.01, "feedback": 0.0, "mix": 1.0}}
    chains = {"vocals": EffectChain([delay], SR, 2), "drums": EffectChain.from_preset("vocal", SR, 2)}
    assert chains["vocals"].latency in (479, 480)  # measured by an impulse
    stage = StemEffects(["vocals", "drums", "bass"], chains, SR, 2)
    assert stage.latency == chains["vocals"].latency
    n = SR // 4
    x = np.zeros((3, 2, n), np.float32)
    x[:, :, 1000] = 1.0
    params = Params.for_stems(["vocals", "drums", "bass"])
    y = np.concatenate([stage.process(x[..., i:i + 300], params) for i in range(0, n, 300)], axis=-1)
    for s in range(3):
        onset = int(np.argmax(np.abs(y[s, 0]) > 1e-3))
        assert onset == 1000 + stage.latency, (s, onset)


def test_presets_listed_and_user_folder(tmp_path):
    names = list_presets(tmp_path)
    for n in ("vocal", "radio", "zam-comp", "mic-vocal"):
        assert n in names
    (tmp_path / "mine.json").write_text('{"effects": [{"type": "Gain", "params": {"gain_db": 3}}]}')
    assert "mine" in list_presets(tmp_path)
    assert load_preset("mine", tmp_path)["effects"][0]["type"] == "Gain"
    chain = EffectChain.from_preset("mine", SR, 2, user_dir=tmp_path)
    assert chain.errors == [] and chain.name == "mine"


def test_mic_chain_in_place_frames_major():
    from plugins.mic import MicChain

    mic = MicChain.from_preset("mic-vocal", SR, 1)
    assert mic.latency == 0 and mic.errors == []  # monitoring latency: two device blocks (MicLane), nothing more
    x = _music(0.5, channels=1)
    whole = EffectChain.from_preset("mic-vocal", SR, 1).process(x)
    out = []
    for i in range(0, x.shape[1], 256):
        buf = np.ascontiguousarray(x[:, i:i + 256].T)  # [frames, 1], as the callback has it
        mic(buf, buf)
        out.append(buf[:, 0].copy())
    np.testing.assert_allclose(np.concatenate(out), whole[0], atol=1e-6)
    assert mic.failures == 0


def test_stereo_vst3_on_mono_mic():
    if not os.path.isdir(ZAM):
        pytest.skip(f"{ZAM} not installed (Debian package zam-plugins)")
    chain = EffectChain.from_preset("zam-comp", SR, 1)
    assert chain.errors == []
    x = _music(0.3, channels=1)
    y = _stream(chain, x, 256)
    assert y.shape == x.shape and np.abs(y).max() > 0.01 and chain.errors == []


def test_vst3_chains_load_from_any_thread():
    """JUCE takes the first thread that loads a VST3 as its message thread; loads from other
    threads then failed (measured: the GUI's engine thread first, the main thread next). All
    loads go through one plugin-host thread, so a chain loads wherever it is built."""
    import threading

    if not os.path.isdir(ZAM):
        pytest.skip(f"{ZAM} not installed (Debian package zam-plugins)")
    chains = {}
    worker = threading.Thread(target=lambda: chains.setdefault("worker", EffectChain.from_preset("zam-comp", SR, 2)))
    worker.start()
    worker.join()
    chains["main"] = EffectChain.from_preset("zam-comp", SR, 2)
    other = threading.Thread(target=lambda: chains.setdefault("another", EffectChain.from_preset("zam-comp", SR, 2)))
    other.start()
    other.join()
    x = _music(0.1)
    for where, chain in chains.items():
        assert chain.errors == [], f"{where}: {chain.errors}"
        y = _stream(chain, x, 256)
        assert np.all(np.isfinite(y)) and not np.allclose(y, x), where  # the compressor ran
