"""Render the demo song: four bars of A minor pop, twice, with a sung-ish lead.

Everything is synthesised with numpy from a fixed seed, so the song and its
stems can be re-rendered exactly: ``python -m stream_engine.demo.song OUT_DIR``.
The lead "voice" is additive synthesis shaped by vowel formants, with vibrato,
mixed to the centre; drums, bass and a detuned pad are spread across the
stereo field, as in most produced music.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

RATE = 44100
BPM = 96
BEAT = 60.0 / BPM
CHORDS = [(57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62)]  # Am F C G (MIDI)
MELODY = [  # (beat offset in bar, beats, midi, vowel) per bar
    [(0, 1.5, 69, "a"), (1.5, 0.5, 71, "e"), (2, 2, 72, "o")],
    [(0, 1, 72, "a"), (1, 1, 69, "i"), (2, 2, 65, "a")],
    [(0, 1.5, 67, "o"), (1.5, 0.5, 69, "e"), (2, 2, 64, "a")],
    [(0, 1, 67, "e"), (1, 1, 71, "o"), (2, 2, 74, "a")],
]
FORMANTS = {"a": (800, 1150, 2900), "e": (400, 1600, 2700), "i": (300, 2300, 3000), "o": (450, 800, 2830)}


def hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def envelope(n: int, attack: float, release: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(n) / rate
    env = np.minimum(1.0, t / max(attack, 1e-4))
    tail = (n / rate) - t
    return env * np.minimum(1.0, tail / max(release, 1e-4))


def voice(n: int, midi: float, vowel: str, rng) -> np.ndarray:
    t = np.arange(n) / RATE
    vibrato = 1 + 0.012 * np.sin(2 * np.pi * 5.5 * t) * np.minimum(1.0, t / 0.3)
    f0 = hz(midi) * vibrato
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    out = np.zeros(n)
    for k in range(1, 40):
        fk = hz(midi) * k
        if fk > 7000:
            break
        gain = sum(np.exp(-0.5 * ((fk - f) / (80 + 0.06 * f)) ** 2) * w for f, w in zip(FORMANTS[vowel], (1, 0.6, 0.25)))
        out += (gain / k**0.5) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    breath = rng.standard_normal(n) * 0.004
    return (out / 4 + breath) * envelope(n, 0.04, 0.08)


def pluck(n: int, freq: float) -> np.ndarray:
    t = np.arange(n) / RATE
    saw = 2 * ((t * freq) % 1.0) - 1
    return (0.6 * np.sin(2 * np.pi * freq * t) + 0.25 * saw) * np.exp(-t * 3.0) * envelope(n, 0.005, 0.05)


def drum_hits(n_total: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kick, snare, hat = (np.zeros(n_total) for _ in range(3))
    beat = int(BEAT * RATE)
    k_len, s_len, h_len = int(0.25 * RATE), int(0.2 * RATE), int(0.05 * RATE)
    t = np.arange(k_len) / RATE
    kick_hit = np.sin(2 * np.pi * (50 * t + 60 * (1 - np.exp(-t * 30)) / 30)) * np.exp(-t * 12)
    ts = np.arange(s_len) / RATE
    snare_hit = (rng.standard_normal(s_len) * 0.6 + np.sin(2 * np.pi * 190 * ts)) * np.exp(-ts * 22)
    hat_hit = np.diff(rng.standard_normal(h_len + 1)) * np.exp(-np.arange(h_len) / RATE * 80) * 0.5
    for b in range(n_total // beat):
        start = b * beat
        for hit, track, at in ((kick_hit, kick, b % 2 == 0), (snare_hit, snare, b % 2 == 1)):
            if at:
                end = min(n_total, start + len(hit))
                track[start:end] += hit[: end - start]
        for half in (0, beat // 2):
            s = start + half
            end = min(n_total, s + h_len)
            hat[s:end] += hat_hit[: end - s]
    return kick, snare, hat


def pan(mono: np.ndarray, position: float) -> np.ndarray:
    """position -1 (left) .. 1 (right), constant power."""
    angle = (position + 1) * np.pi / 4
    return np.stack([np.cos(angle) * mono, np.sin(angle) * mono])


def render(bars: int = 8, seed: int = 7) -> dict[str, np.ndarray]:
    """{stem: (2, n)} for vocals, drums, bass, other and their mixture."""
    rng = np.random.default_rng(seed)
    bar = 4 * BEAT
    n = int(bars * bar * RATE) + RATE
    vocals, bass, other = (np.zeros((2, n)) for _ in range(3))
    for b in range(bars):
        chord = CHORDS[b % 4]
        start = int(b * bar * RATE)
        length = int(bar * RATE)
        t = np.arange(length) / RATE
        for i, note in enumerate(chord):  # pad: detuned saws, left and right voices differ
            for side, detune in ((0, -0.09), (1, 0.11)):
                f = hz(note + 12) * (1 + detune / 12)
                wave = np.sin(2 * np.pi * f * t + i) + 0.3 * np.sin(4 * np.pi * f * t + side)
                other[side, start : start + length] += 0.05 * wave * envelope(length, 0.3, 0.4) * (0.6 + 0.4 * side if i == 1 else 1)
        for k in range(8):  # bass: eighth notes on the root
            s = start + int(k * BEAT / 2 * RATE)
            m = int(BEAT / 2 * RATE)
            bass[:, s : s + m] += 0.35 * pluck(m, hz(chord[0] - 24))
        if b >= 1:  # the voice enters after one bar
            for offset, beats, midi, vowel in MELODY[b % 4]:
                s = start + int(offset * BEAT * RATE)
                m = int(beats * BEAT * RATE)
                vocals[:, s : s + m] += 0.3 * voice(m, midi, vowel, rng)
    kick, snare, hat = drum_hits(n, rng)
    drums = pan(0.5 * kick, 0.0) + pan(0.3 * snare, -0.3) + pan(0.25 * hat, 0.6)
    stems = {"vocals": vocals, "drums": drums, "bass": bass, "other": other}
    mixture = sum(stems.values())
    scale = 0.9 / np.max(np.abs(mixture))
    stems = {k: (v * scale).astype(np.float32) for k, v in stems.items()}
    stems["accompaniment"] = stems["drums"] + stems["bass"] + stems["other"]
    stems["mixture"] = stems["vocals"] + stems["accompaniment"]
    return stems


def main(argv=None) -> int:
    import soundfile as sf

    out = Path((argv or sys.argv[1:] or ["."])[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, data in render().items():
        sf.write(out / f"{name}.flac", data.T, RATE, subtype="PCM_16")
    print(f"rendered the demo song and its stems into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
