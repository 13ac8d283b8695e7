"""`stemstream render-gm`: General MIDI songs rendered by FluidSynth to drums / bass / other.

A short song written here with mido, one instrument class at a time, and the
real FluidSynth and soundfont from Debian (``scripts/setup.sh test``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

mido = pytest.importorskip("mido")

from stream_engine.tools import render_gm  # noqa: E402

FONT = next((s for s in render_gm.SOUNDFONTS if s.is_file()), render_gm.SOUNDFONTS[0])
needs_fluidsynth = pytest.mark.skipif(not shutil.which("fluidsynth") or not FONT.is_file(),
                                      reason=f"fluidsynth or a GM soundfont missing; {render_gm.INSTALL_HINT}")
# (channel, program, start s, end s): drums, then bass (GM 34, electric bass), then piano
PARTS = {"drums": (9, 0, 0.0, 0.8), "bass": (1, 33, 1.6, 2.4), "other": (0, 0, 3.2, 4.0)}


def write_song(path: Path) -> Path:
    """120 bpm, 480 ticks a beat: 1 s = 960 ticks. Each part plays eighth notes in its own span."""
    track = mido.MidiTrack()
    events = []
    for channel, program, start, end in PARTS.values():
        events.append((0, mido.Message("program_change", channel=channel, program=program)))
        note = 38 if channel == 9 else (40 if program == 33 else 64)
        t = start
        while t < end - 0.01:
            events.append((round(t * 960), mido.Message("note_on", channel=channel, note=note, velocity=110)))
            events.append((round((t + 0.2) * 960), mido.Message("note_off", channel=channel, note=note)))
            t += 0.25
    now = 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        track.append(msg.copy(time=tick - now))
        now = tick
    song = mido.MidiFile(type=0, ticks_per_beat=480, tracks=[track])
    song.save(str(path))
    return path


def test_notes_go_to_their_stem_and_end_where_they_started(tmp_path):
    """Channel 10 is drums, programs 33-40 bass, the rest other; a note started as bass ends
    as bass even if the channel's program changes while it sounds."""
    parts = render_gm.split_midi(write_song(tmp_path / "song.mid"))
    assert render_gm.notes_per_stem(parts) == {"drums": 4, "bass": 4, "other": 4}
    track = mido.MidiTrack([mido.Message("program_change", channel=2, program=35),
                            mido.Message("note_on", channel=2, note=40, velocity=90),
                            mido.Message("program_change", channel=2, program=0, time=10),
                            mido.Message("note_off", channel=2, note=40, time=10),
                            mido.Message("note_on", channel=2, note=60, velocity=90, time=10),
                            mido.Message("note_off", channel=2, note=60, time=10)])
    mido.MidiFile(type=0, tracks=[track]).save(str(tmp_path / "change.mid"))
    parts = render_gm.split_midi(tmp_path / "change.mid")
    bass = [(m.type, m.note) for m in parts["bass"].tracks[0] if m.type.startswith("note")]
    other = [(m.type, m.note) for m in parts["other"].tracks[0] if m.type.startswith("note")]
    assert bass == [("note_on", 40), ("note_off", 40)] and other == [("note_on", 60), ("note_off", 60)]
    # every stem keeps every other event, and all stems last as long as the song
    assert all(sum(m.time for m in p.tracks[0]) == 40 for p in parts.values())
    assert all(sum(m.type == "program_change" for m in p.tracks[0]) == 2 for p in parts.values())


@needs_fluidsynth
def test_render_gm_writes_each_instrument_class_to_its_stem(tmp_path):
    """The command writes OUT/song/{drums,bass,other}.flac, 44.1 kHz stereo, equal lengths;
    each stem sounds in its part's span and is silent in the others', and the three add up
    to FluidSynth's render of the whole song."""
    import soundfile as sf

    from stream_engine.cli import main

    midi = write_song(tmp_path / "song.mid")
    code = main(["render-gm", str(tmp_path / "out"), "--midi", str(midi), "--soundfont", str(FONT),
                 "--no-effects"])
    assert code == 0
    folder = tmp_path / "out" / "song"
    assert sorted(p.name for p in folder.iterdir()) == ["bass.flac", "drums.flac", "other.flac"]
    stems = {}
    for stem in render_gm.STEMS:
        info = sf.info(str(folder / f"{stem}.flac"))
        assert (info.samplerate, info.channels) == (44100, 2)
        stems[stem] = sf.read(str(folder / f"{stem}.flac"), always_2d=True)[0]
    assert len({len(a) for a in stems.values()}) == 1

    def rms_db(audio, span):
        a = audio[int(span[0] * 44100): int(span[1] * 44100)]
        return 10 * np.log10(np.mean(a ** 2) + 1e-20)

    for stem, (_, _, start, end) in PARTS.items():
        own = rms_db(stems[stem], (start, end))
        assert own > -50, (stem, own)
        for other, (_, _, s2, e2) in PARTS.items():
            if other != stem:
                assert rms_db(stems[stem], (s2 + 0.1, e2)) < own - 40, (stem, "sounds during", other)
    full = tmp_path / "full.wav"
    row = (tmp_path / "out" / "render.tsv").read_text().splitlines()
    gain = float(dict(zip(row[0].split("\t"), row[1].split("\t")))["gain"])
    render_gm.render_midi(midi, FONT, full, 44100, gain, False, False)
    whole = sf.read(str(full), always_2d=True)[0]
    total = sum(stems.values())
    n = min(len(whole), len(total))
    snr = 10 * np.log10(np.sum(whole[:n] ** 2) / np.sum((whole[:n] - total[:n]) ** 2))
    assert snr > 60, snr  # the stems are the song, split (24-bit files: measured 81 dB on an openmsx song)


def test_render_gm_errors_name_what_is_missing(tmp_path, capsys):
    from stream_engine.cli import main

    assert main(["render-gm", str(tmp_path / "out"), "--midi", str(tmp_path / "nothing")]) == 2
    assert str(tmp_path / "nothing") in capsys.readouterr().err
    (tmp_path / "bad.mid").write_bytes(b"MThd not really")
    assert main(["render-gm", str(tmp_path / "out"), "--midi", str(tmp_path / "bad.mid"),
                 "--soundfont", str(tmp_path / "none.sf2")]) == 2
    assert "none.sf2" in capsys.readouterr().err
