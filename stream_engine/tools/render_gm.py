"""``stemstream render-gm OUT``: four-stem training material from General MIDI songs.

Real drum and bass stems are scarce (../shared/data has one song with a real
bass). A General MIDI song already says which instrument plays each note, so a
synthesiser can render every instrument class to its own stem:

    drums  = MIDI channel 10 (GM percussion)
    bass   = GM programs 33-40 (acoustic, electric, fretless, slap, synth basses)
    other  = every other note

Each song is split into one MIDI file per stem (every stem keeps all the
song's tempo, controller and program events, so they play in step and end
together) and rendered by FluidSynth with a General MIDI soundfont; the three
renders are written as ``OUT/<track>/{drums,bass,other}.flac`` (44.1 kHz,
stereo, 24-bit), the same length, scaled alike so their sum does not clip.
There are no vocals: training mixes in real ones (``eif/train``,
``mir1k/train``).

Variation, reproducible: per song (and per ``--variants`` copy) a generator
seeded by ``--seed`` and the song's name picks the soundfont among those
installed, FluidSynth's reverb and chorus on or off, and the gain.
``OUT/render.tsv`` lists what each track was made from.

Sources (Debian packages; ``scripts/setup.sh test`` installs them):
``openttd-openmsx`` (31 GM songs with drums, GPL-2), ``fluidsynth``,
``fluid-soundfont-gm`` (FluidR3_GM, MIT) and ``timgm6mb-soundfont`` (GPL-2);
``musescore-general-soundfont`` is used too where installed. Renders are
data, made on the machine: never commit them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

STEMS = ("drums", "bass", "other")
DRUM_CHANNEL = 9  # "channel 10", counted from 0 on the wire
BASS_PROGRAMS = range(32, 40)  # GM 33-40, counted from 0 on the wire
MIDI_DIRS = (Path("/usr/share/games/openttd/baseset/openmsx"),)
SOUNDFONTS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
              Path("/usr/share/sounds/sf3/MuseScore_General.sf3"))
RATE = 44100
INSTALL_HINT = ("Debian: apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont openttd-openmsx "
                "(scripts/setup.sh test installs them)")


class RenderError(RuntimeError):
    """Something the user must fix (a missing tool, soundfont or MIDI file); the message says what."""


def stem_of(channel: int, program: int) -> str:
    if channel == DRUM_CHANNEL:
        return "drums"
    return "bass" if program in BASS_PROGRAMS else "other"


def split_midi(path: Path) -> dict:
    """{stem: mido.MidiFile}: one type-0 file per stem with that stem's notes and every other event."""
    import mido

    try:
        song = mido.MidiFile(str(path))
    except (OSError, ValueError, EOFError, KeyError, IndexError) as exc:
        raise RenderError(f"{path}: not a readable MIDI file ({exc})") from None
    program = [0] * 16
    sounding: dict[tuple[int, int], str] = {}  # a note ends in the stem it started in
    tracks = {stem: mido.MidiTrack() for stem in STEMS}
    waited = dict.fromkeys(STEMS, 0)  # ticks since each stem's last event
    for msg in mido.merge_tracks(song.tracks):
        for stem in STEMS:
            waited[stem] += msg.time
        if msg.type == "program_change":
            program[msg.channel] = msg.program
        if msg.type in ("note_on", "note_off"):
            key = (msg.channel, msg.note)
            if msg.type == "note_on" and msg.velocity > 0:
                sounding[key] = stem_of(msg.channel, program[msg.channel])
            targets = [sounding.pop(key, stem_of(msg.channel, program[msg.channel]))] \
                if msg.type == "note_off" or msg.velocity == 0 else [sounding[key]]
        elif msg.type == "end_of_track":
            continue  # mido closes each track itself, at the last event
        else:
            targets = list(STEMS)
        for stem in targets:
            tracks[stem].append(msg.copy(time=waited[stem]))
            waited[stem] = 0
    out = {}
    for stem, track in tracks.items():
        track.append(mido.MetaMessage("end_of_track", time=waited[stem]))  # all stems end together
        out[stem] = mido.MidiFile(type=0, ticks_per_beat=song.ticks_per_beat, tracks=[track])
    return out


def notes_per_stem(parts: dict) -> dict[str, int]:
    return {stem: sum(1 for m in mid.tracks[0] if m.type == "note_on" and m.velocity > 0)
            for stem, mid in parts.items()}


def fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RenderError(f"fluidsynth is not installed; {INSTALL_HINT}")
    return exe


def render_midi(midi: Path, soundfont: Path, out_wav: Path, rate: int, gain: float, reverb: bool,
                chorus: bool) -> None:
    cmd = [fluidsynth(), "-ni", "-q", "-F", str(out_wav), "-T", "wav", "-O", "float", "-r", str(rate),
           "-g", f"{gain:.3f}", "-R", "1" if reverb else "0", "-C", "1" if chorus else "0",
           "-o", "synth.polyphony=512", str(soundfont), str(midi)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not out_wav.is_file():
        raise RenderError(f"fluidsynth failed on {midi.name} with {soundfont.name} ({r.returncode}): "
                          f"{(r.stderr or r.stdout).strip()[-300:]}")


def choices(track: str, seed: int, soundfonts: list[Path], effects: bool) -> dict:
    rng = np.random.default_rng([seed, zlib.crc32(track.encode())])
    return {"soundfont": soundfonts[int(rng.integers(len(soundfonts)))],
            "reverb": bool(effects and rng.random() < 0.5), "chorus": bool(effects and rng.random() < 0.3),
            "gain": float(rng.uniform(0.3, 0.6))}


def render_song(midi: Path, out_dir: Path, track: str, how: dict, rate: int = RATE) -> dict:
    """Write ``out_dir/track/{drums,bass,other}.flac``; returns a row for render.tsv."""
    import soundfile as sf

    parts = split_midi(midi)
    with tempfile.TemporaryDirectory(prefix="stemstream-render-") as tmp:
        audio = {}
        for stem, mid in parts.items():
            mid.save(str(Path(tmp) / f"{stem}.mid"))
            wav = Path(tmp) / f"{stem}.wav"
            render_midi(Path(tmp) / f"{stem}.mid", how["soundfont"], wav, rate, how["gain"], how["reverb"],
                        how["chorus"])
            data, got_rate = sf.read(str(wav), dtype="float32", always_2d=True)
            if got_rate != rate or data.shape[1] != 2:
                raise RenderError(f"fluidsynth wrote {got_rate} Hz x {data.shape[1]} channels for {midi.name}, "
                                  f"expected {rate} Hz stereo")
            audio[stem] = data
    n = max(a.shape[0] for a in audio.values())
    audio = {k: np.pad(a, ((0, n - a.shape[0]), (0, 0))) for k, a in audio.items()}
    peak = float(np.max(np.abs(sum(audio.values())))) if n else 0.0
    scale = 0.98 / peak if peak > 0.98 else 1.0  # the same for every stem: they still sum to the mixture
    folder = out_dir / track
    partial = out_dir / f".{track}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for stem, data in audio.items():
        sf.write(str(partial / f"{stem}.flac"), data * scale, rate, subtype="PCM_24")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)  # a track folder is complete or absent
    notes = notes_per_stem(parts)
    return {"track": track, "midi": str(midi), "soundfont": how["soundfont"].name, "reverb": int(how["reverb"]),
            "chorus": int(how["chorus"]), "gain": round(how["gain"] * scale, 4), "seconds": round(n / rate, 2),
            **{f"{stem}_notes": notes[stem] for stem in STEMS}}


def find_midi(dirs) -> list[Path]:
    files = []
    for d in dirs:
        d = Path(d)
        if d.is_file():
            files.append(d)
        elif d.is_dir():
            files += sorted(p for p in d.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
        else:
            raise RenderError(f"{d}: no such MIDI file or folder" + ("" if d not in MIDI_DIRS else f"; {INSTALL_HINT}"))
    if not files:
        raise RenderError(f"no .mid files in {', '.join(map(str, dirs))}")
    return files


def render_all(out_dir: Path, midi_dirs=MIDI_DIRS, soundfonts=None, variants: int = 1, seed: int = 0,
               effects: bool = True, limit: int | None = None, log=print) -> list[dict]:
    fonts = [Path(s) for s in soundfonts] if soundfonts else [s for s in SOUNDFONTS if s.is_file()]
    missing = [s for s in fonts if not s.is_file()]
    if missing or not fonts:
        raise RenderError(f"soundfont {missing[0] if missing else '(none installed)'} not found; {INSTALL_HINT}")
    fluidsynth()
    files = find_midi(midi_dirs)[:limit]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for midi in files:
        for v in range(variants):
            track = midi.stem if v == 0 else f"{midi.stem}-v{v + 1}"
            row = render_song(midi, out_dir, track, choices(track, seed, fonts, effects))
            rows.append(row)
            log(f"{track}: {row['seconds']:.1f} s, {row['soundfont']}, reverb {row['reverb']}, chorus "
                f"{row['chorus']}; notes drums {row['drums_notes']}, bass {row['bass_notes']}, other "
                f"{row['other_notes']}")
    header = list(rows[0]) if rows else []
    lines = ["\t".join(header)] + ["\t".join(str(r[k]) for k in header) for r in rows]
    (out_dir / "render.tsv").write_text("\n".join(lines) + "\n")
    return rows


def add_parsers(sub) -> None:
    p = sub.add_parser("render-gm", help="render General MIDI songs to drums/bass/other stems (training data)")
    p.add_argument("out", help="writes OUT/<track>/{drums,bass,other}.flac and OUT/render.tsv")
    p.add_argument("--midi", nargs="+", default=[str(d) for d in MIDI_DIRS],
                   help="MIDI files or folders (default: Debian openttd-openmsx's 31 songs)")
    p.add_argument("--soundfont", nargs="+", default=None, help="soundfonts to pick from (default: those installed)")
    p.add_argument("--variants", type=int, default=1, help="renders per song, each with its own choices")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-effects", action="store_true", help="no reverb or chorus")
    p.add_argument("--limit", type=int, default=None, help="only the first N songs")
    p.set_defaults(func=cmd_render)


def cmd_render(args) -> int:
    if args.variants < 1:
        print(f"stemstream: error: --variants must be at least 1, not {args.variants}", file=sys.stderr)
        return 2
    try:
        rows = render_all(Path(args.out), args.midi, args.soundfont, args.variants, args.seed,
                          effects=not args.no_effects, limit=args.limit)
    except RenderError as exc:
        print(f"stemstream: error: {exc}", file=sys.stderr)
        return 2
    minutes = sum(r["seconds"] for r in rows) / 60
    print(f"rendered {len(rows)} tracks, {minutes:.1f} min, into {args.out}")
    return 0
