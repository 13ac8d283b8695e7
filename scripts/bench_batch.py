#!/usr/bin/env python3
"""Benchmark `stemstream separate` on a library: in process, on Ray with 1 and with N workers, and resumed.

    python3 scripts/bench_batch.py [--tracks 20] [--seconds 60] [--profile balanced] [--workers 2]

Makes TRACKS tracks of SECONDS s in a temporary folder (cut from the songs in
../shared/data/songs when present, read only; synthetic music otherwise), then
runs the real CLI, each run in its own process and output folder:

1. in process (no Ray), 2. --workers 1, 3. --workers N,
4. --workers N killed (SIGKILL) half-way through and run again: how many tracks
   the second run redid, against how many were in flight when it was killed.

Prints wall time end to end (Ray's start included) and the batch's own wall
time (from the summary line), audio minutes per wall minute, N workers'
speed-up over in process and Ray's overhead at 1 worker. Figures on a shared
machine move with its load, so the load (`uptime`) is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SONGS = REPO.parent / "shared" / "data" / "songs"
RATE = 44100


def make_library(folder: Path, tracks: int, seconds: float) -> str:
    """``folder/<song>/<song> part K.flac``; returns where the audio came from."""
    songs = sorted(SONGS.glob("*/mixture.*")) if SONGS.is_dir() else []
    infos = [(p, sf.info(str(p))) for p in songs]
    made, k = 0, 0
    while songs and made < tracks and k < 100:
        for path, info in infos:
            if made == tracks:
                break
            if info.duration >= (k + 1) * seconds:
                n = int(seconds * info.samplerate)
                x, rate = sf.read(str(path), start=k * n, frames=n, dtype="float32", always_2d=True)
                out = folder / path.parent.name / f"{path.parent.name} part {k + 1}.flac"
                out.parent.mkdir(parents=True, exist_ok=True)
                sf.write(out, x, rate, subtype="PCM_16")
                made += 1
        k += 1
    if made == tracks:
        return f"{tracks} cuts of {seconds:.0f} s from {SONGS}"
    rng = np.random.default_rng(0)  # synthetic: a vibrato voice in the centre over wide noise and a bass
    t = np.arange(int(seconds * RATE)) / RATE
    for i in range(made, tracks):
        f0 = 220 * 2 ** (i / 12)
        voice = 0.25 * np.sin(2 * np.pi * (f0 + 6 * np.sin(2 * np.pi * 5 * t)) * t) * (np.sin(np.pi * t) ** 2)
        bass = 0.15 * np.sin(2 * np.pi * f0 / 4 * t)
        x = np.stack([voice + bass + 0.03 * rng.standard_normal(t.size),
                      voice - bass + 0.03 * rng.standard_normal(t.size)], axis=1).astype(np.float32)
        out = folder / "synthetic" / f"track {i:02d}.flac"
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, x, RATE, subtype="PCM_16")
    return f"{made} cuts from {SONGS}, {tracks - made} synthetic tracks of {seconds:.0f} s"


def cli_args(lib: Path, out: Path, profile: str, extra=()) -> list[str]:
    return [sys.executable, "-m", "stream_engine.cli", "separate", str(lib), "--out", str(out), "--profile", profile,
            "--quiet", *extra]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}


def timed(cmd: list[str]) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env())
    wall = time.perf_counter() - t0
    text = r.stdout + r.stderr
    m = re.search(r"([\d.]+) audio min in ([\d.]+) s wall", text)
    if r.returncode != 0 or not m:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
    audio_min, batch_wall = float(m.group(1)), float(m.group(2))
    return {"wall": wall, "batch_wall": batch_wall, "audio_min": audio_min,
            "speed": audio_min / (wall / 60), "summary": [ln for ln in text.splitlines() if "worker " in ln]}


def manifest(out: Path) -> dict:
    entries = {}
    path = out / "stemstream-manifest.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        entries[e["track"]] = e
    return entries


def kill_session(sid: int) -> None:
    """SIGKILL what is left of the killed run's session (Ray agents outlive their raylet)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of /proc/PID/stat: the session id
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
            except OSError:
                pass


def killed_and_resumed(lib: Path, out: Path, profile: str, workers: int, tracks: int) -> dict:
    proc = subprocess.Popen(cli_args(lib, out, profile, ["--workers", str(workers)]), cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while sum(e["status"] == "done" for e in manifest(out).values()) < tracks // 2:
        if proc.poll() is not None:
            raise SystemExit("the batch ended before it was half-way")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # killed with its embedded Ray, as a job scheduler would: no clean-up
    proc.wait()
    kill_session(proc.pid)
    before = manifest(out)
    done = {t for t, e in before.items() if e["status"] == "done"}
    in_flight = {t for t, e in before.items() if e["status"] == "running"}
    r = subprocess.run(cli_args(lib, out, profile, ["--workers", str(workers)]), capture_output=True, text=True,
                       cwd=REPO, env=env())
    after = manifest(out)
    m = re.search(r"(\d+) separated, (\d+) already done", r.stdout + r.stderr)
    return {"done_before": len(done), "in_flight": len(in_flight), "separated": int(m.group(1)),
            "skipped": int(m.group(2)), "exit": r.returncode, "partials_left": len(list(out.rglob("*.partial"))),
            "done_redone": sum(after[t].get("started") != before[t].get("started") for t in done),
            "all_done": all(e["status"] == "done" for e in after.values()) and len(after) == tracks}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--profile", default="balanced")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    with tempfile.TemporaryDirectory(prefix="stemstream-bench-") as tmp:
        lib = Path(tmp) / "library"
        print(f"library: {make_library(lib, args.tracks, args.seconds)}; profile {args.profile}, default model")
        runs = {}
        for name, extra in (("in process", []), ("--workers 1", ["--workers", "1"]),
                            (f"--workers {args.workers}", ["--workers", str(args.workers)])):
            runs[name] = r = timed(cli_args(lib, Path(tmp) / f"out {name}", args.profile, extra))
            print(f"{name:>12}: wall {r['wall']:6.1f} s (batch {r['batch_wall']:6.1f} s), "
                  f"{r['speed']:5.1f} audio min per min ({r['audio_min']:.0f} audio min)")
            for line in r["summary"]:
                print(f"{'':>14}{line.strip()}")
        base, one, many = runs["in process"], runs["--workers 1"], runs[f"--workers {args.workers}"]
        print(f"speed-up of {args.workers} workers over in process: {base['wall'] / many['wall']:.2f}x end to end, "
              f"{base['batch_wall'] / many['batch_wall']:.2f}x batch only (target >= 1.7x)")
        print(f"Ray's overhead at 1 worker: {100 * (one['wall'] / base['wall'] - 1):+.1f}% end to end, "
              f"{100 * (one['batch_wall'] / base['batch_wall'] - 1):+.1f}% batch only (target < 10%)")
        k = killed_and_resumed(lib, Path(tmp) / "out killed", args.profile, args.workers, args.tracks)
        print(f"killed half-way (SIGKILL of the driver, --workers {args.workers}): {k['done_before']} done, "
              f"{k['in_flight']} in flight, {args.tracks - k['done_before'] - k['in_flight']} not started; "
              f"the rerun separated {k['separated']} and skipped {k['skipped']}; tracks redone that were done "
              f"before: {k['done_redone']} (target 0: only the {k['in_flight']} in flight are redone); "
              f"all done: {k['all_done']}, exit {k['exit']}, partial files left: {k['partials_left']}")
    print(f"load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
