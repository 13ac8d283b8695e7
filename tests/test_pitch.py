"""Key change: a real streaming pitch shifter on real tones."""

import numpy as np
import pytest

from stream_engine.params import Params
from stream_engine.pitch import KeyShift

SR = 48000
STEMS = ["vocals", "accompaniment"]


def _tone(freq=440.0, seconds=1.5, amp=0.5):
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _stems_of(sig):
    return np.stack([np.stack([sig, sig]), np.stack([sig, sig])])  # [S=2, C=2, n]


def _stream(ks, x, params, block=256, keys_at=None):
    out = []
    for i in range(0, x.shape[-1], block):
        if keys_at and i in keys_at:
            params = params.with_(key=keys_at[i])
        out.append(ks.process(x[..., i:i + block], params))
    return np.concatenate(out, axis=-1)


def _freq(y, sr=SR):
    seg = y[-32768:] * np.hanning(32768)
    spec = np.abs(np.fft.rfft(seg))
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1:k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / 32768


@pytest.mark.parametrize("key", [12, -5, 3])
def test_tone_lands_on_expected_frequency(key):
    ks = KeyShift(STEMS, SR, 2)
    y = _stream(ks, _stems_of(_tone()), Params.for_stems(STEMS).with_(key=key), block=256)
    expected = 440.0 * 2 ** (key / 12)
    for c in range(2):
        got = _freq(y[1, c])
        assert abs(got / expected - 1) < 0.01, (key, got, expected)
    assert abs(_freq(y[0, 0]) / 440.0 - 1) < 0.001  # vocals untouched
    # level kept within 3 dB
    rms = np.sqrt(np.mean(y[1, 0, -SR // 2:] ** 2))
    assert 0.5 / np.sqrt(2) / 1.42 < rms < 0.5 / np.sqrt(2) * 1.42


def test_latency_is_as_reported_and_within_50ms():
    ks = KeyShift(STEMS, SR, 2)
    assert 0 < ks.latency <= 0.050 * SR
    assert ks.latency_ms == pytest.approx(1000 * ks.latency / SR)
    rng = np.random.default_rng(1)
    x = (0.3 * rng.standard_normal((2, 2, SR // 2))).astype(np.float32)
    # key 0: every stem is the input delayed by exactly the latency
    y = _stream(ks, x, Params.for_stems(STEMS), block=333)
    np.testing.assert_array_equal(y[..., ks.latency:], x[..., :-ks.latency])
    assert not y[..., :ks.latency].any()
    # shifted: a tone burst's onset shows up at the reported latency (within a hop)
    ks.reset()
    start = 9000
    sig = np.zeros(SR // 2, np.float32)
    sig[start:] = _tone(seconds=0.5)[: SR // 2 - start]
    y = _stream(ks, _stems_of(sig), Params.for_stems(STEMS).with_(key=5), block=256)
    env = np.abs(y[1, 0])
    env_v = np.abs(y[0, 0])
    half = 0.5 * env[start + ks.latency + 2048:].max()
    onset = int(np.argmax(env > half))
    onset_v = int(np.argmax(env_v > 0))
    assert onset_v == start + ks.latency + 1  # vocals: pure delay (sin(0) = 0)
    assert abs(onset - (start + ks.latency)) <= 256, (onset, start + ks.latency)


def test_stream_never_silent_and_key_changes_do_not_glitch():
    ks = KeyShift(STEMS, SR, 2)
    # a chord, blocks of varying size, key changes mid-stream (to and from 0)
    x_sig = _tone(220, 3.0, 0.3) + _tone(330, 3.0, 0.2) + _tone(523, 3.0, 0.1)
    x = _stems_of(x_sig)
    blocks = [256, 128, 480, 64, 1024]
    params = Params.for_stems(STEMS).with_(key=3)
    keys = {SR // 2: -4, SR: 0, 3 * SR // 2: 12, 2 * SR: -12, 5 * SR // 2: 1}
    out, i, b = [], 0, 0
    next_changes = sorted(keys)
    while i < x.shape[-1]:
        n = blocks[b % len(blocks)]
        b += 1
        while next_changes and i >= next_changes[0]:
            params = params.with_(key=keys[next_changes.pop(0)])
        out.append(ks.process(x[..., i:i + n], params))
        assert out[-1].shape == x[..., i:i + n].shape
        i += n
    y = np.concatenate(out, axis=-1)
    acc = y[1, 0, ks.latency:]
    win = 480  # 10 ms
    rms = np.array([np.sqrt(np.mean(acc[j:j + win] ** 2)) for j in range(0, acc.size - win, win)])
    in_rms = np.sqrt(np.mean(x_sig ** 2))
    assert rms.min() > 0.25 * in_rms, rms.min()  # never silent, no deep dropouts
    assert np.abs(y).max() < 1.5 * np.abs(x).max()  # no bursts on key changes
    assert np.isfinite(y).all()
