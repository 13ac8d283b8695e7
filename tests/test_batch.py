"""Libraries, not songs (issue 18): folders and lists in, a mirrored tree out, a manifest
that makes reruns skip what is done, and Ray workers that survive bad files, a stop
and a killed process.

Everything is real: files on disk, the CLI in its own process, a real Ray started
embedded with 2 CPUs. Inputs are tiny and the models cheap (passthrough, whose
vocals equal its input exactly, so a stem can be traced back to the file it came
from; dsp-center where a track has to take long enough to be stopped or killed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_engine.batch import MANIFEST

REPO = Path(__file__).resolve().parent.parent
STEMS = ("vocals", "accompaniment", "instrumental", "karaoke")
RATE = 44100


def noise(seconds: float, seed: int, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((int(seconds * RATE), channels))).astype(np.float32)


def write(path: Path, seconds: float, seed: int, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, noise(seconds, seed), RATE, **kw)
    return path


def env() -> dict:
    """This checkout's code, for the CLI and (through it) for its Ray workers."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}


def cli(*args, timeout=300, env_=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream_engine.cli", "separate", *map(str, args), "--quiet"],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env_ or env())


def start_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stream_engine.cli", "separate", *map(str, args), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env())


def manifest(out: Path) -> dict[str, dict]:
    """The last record of each track, as ``batch.Manifest`` reads it."""
    entries = {}
    path = out / MANIFEST
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line being written right now
            entries[e["track"]] = e
    return entries


def partials(folder: Path) -> list[Path]:
    return list(folder.rglob("*.partial")) if folder.exists() else []


def assert_complete(out: Path, track: str, src: Path, fmt: str = "wav") -> None:
    """All stems there, whole (decodable to the end), with the input's length."""
    n = sf.info(str(src)).frames
    for s in STEMS:
        y, _ = sf.read(out / track / f"{s}.{fmt}", dtype="float32", always_2d=True)
        assert len(y) == n and np.isfinite(y).all(), (track, s)


def vocals_equal_input(out: Path, track: str, src: Path) -> bool:
    x, _ = sf.read(src, dtype="float32", always_2d=True)
    y, _ = sf.read(out / track / "vocals.wav", dtype="float32", always_2d=True)
    return y.shape == x.shape and np.max(np.abs(y - x)) <= 1e-4


# -- in process: inputs, names, manifest, resume (no Ray) ------------------------------------------
def test_without_workers_ray_is_never_imported(tmp_path):
    src = write(tmp_path / "song.wav", 0.3, 0)
    code = ("import sys; from stream_engine.cli import main; "
            f"rc = main(['separate', {str(src)!r}, '--out', {str(tmp_path / 'O')!r}, '--model', 'passthrough', "
            "'--quiet']); assert rc == 0, rc; assert 'ray' not in sys.modules, 'ray was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "O" / "song" / "vocals.wav").exists()


def test_folders_are_mirrored_and_lists_are_read(tmp_path):
    lib = tmp_path / "lib"
    files = {"a/x": write(lib / "a" / "x.wav", 0.3, 1), "b/x": write(lib / "b" / "x.wav", 0.3, 2),
             "song": write(lib / "song.flac", 0.3, 3, format="FLAC")}
    write(lib / "a" / "._x.wav", 0.1, 4)  # macOS AppleDouble: hidden, skipped
    (lib / "cover.jpg").write_bytes(b"\xff\xd8 not audio")  # not audio by extension: skipped
    other = write(tmp_path / "elsewhere" / "y.wav", 0.3, 5)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# tracks\n\nelsewhere/y.wav\n{other}\n")  # relative to the list's folder, and absolute
    out = lib / "stems"  # inside the input folder: never read back as input
    r = cli(lib, listing, "--out", out, "--model", "passthrough")
    assert r.returncode == 0, r.stderr
    for track, src in files.items():
        assert vocals_equal_input(out, track, src), track  # each stem came from its own input
    # y.wav given twice (by the list, relatively and absolutely): two names, nothing overwritten
    assert vocals_equal_input(out, "y", other) and vocals_equal_input(out, "y-2", other)
    assert not (out / "a" / "._x").exists() and not (out / "stems").exists() and not (out / "cover").exists()
    assert {t for t, e in manifest(out).items() if e["status"] == "done"} == {"a/x", "b/x", "song", "y", "y-2"}
    r = cli(lib, listing, "--out", out, "--model", "passthrough")  # the output folder is not an input now either
    assert r.returncode == 0 and "5 track(s): 0 separated, 5 already done" in r.stdout, r.stdout + r.stderr


def test_rerun_redoes_changed_inputs_and_models_and_force_redoes_all(tmp_path):
    a, b = write(tmp_path / "in" / "a.wav", 0.3, 1), write(tmp_path / "in" / "b.wav", 0.3, 2)
    out = tmp_path / "O"
    assert cli(tmp_path / "in", "--out", out, "--model", "passthrough").returncode == 0
    first = manifest(out)
    os.utime(a, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same bytes: still done
    write(b, 0.3, 7)  # new content
    r = cli(tmp_path / "in", "--out", out, "--model", "passthrough")
    assert "1 separated, 1 already done" in r.stdout, r.stdout
    assert vocals_equal_input(out, "b", b)
    assert manifest(out)["b"]["sha256"] != first["b"]["sha256"] and manifest(out)["a"] == first["a"]
    r = cli(tmp_path / "in", "--out", out, "--model", "dsp-center")  # another model: everything again
    assert "2 separated, 0 already done" in r.stdout, r.stdout
    r = cli(tmp_path / "in", "--out", out, "--model", "dsp-center", "--force")
    assert "2 separated, 0 already done" in r.stdout, r.stdout
    (out / "a" / "karaoke.wav").unlink()  # an output deleted by hand is made again
    r = cli(tmp_path / "in", "--out", out, "--model", "dsp-center")
    assert "1 separated, 1 already done" in r.stdout and (out / "a" / "karaoke.wav").exists(), r.stdout


def test_exit_status_counts_failed_tracks(tmp_path):
    good = write(tmp_path / "good.wav", 0.3, 0)
    (tmp_path / "bad1.wav").write_bytes(b"RIFF garbage")
    (tmp_path / "bad2.wav").write_bytes(b"")
    r = cli(good, tmp_path / "bad1.wav", tmp_path / "bad2.wav", tmp_path / "missing.wav", "--out", tmp_path / "O",
            "--model", "passthrough")
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    for name in ("bad1.wav", "bad2.wav", "missing.wav"):
        assert str(tmp_path / name) in r.stderr  # the summary names every failed file
    assert (tmp_path / "O" / "good" / "vocals.wav").exists()


def test_a_second_batch_into_the_same_folder_is_refused(tmp_path):
    from stream_engine.batch import BatchError, Manifest

    with Manifest(tmp_path / "O"):
        r = cli(write(tmp_path / "s.wav", 0.2, 0), "--out", tmp_path / "O", "--model", "passthrough")
        assert r.returncode == 2 and "another stemstream separate is writing into this folder" in r.stderr
        with pytest.raises(BatchError):
            Manifest(tmp_path / "O").open()


# -- on Ray: a real embedded cluster with 2 CPUs ----------------------------------------------------
ray_needed = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import ray"], capture_output=True).returncode != 0,
    reason="Ray is not installed (pip install '.[cluster]'; scripts/setup.sh test installs it)")


@pytest.fixture(scope="module")
def ray_library(tmp_path_factory):
    """A folder tree with two same-named tracks, a corrupt file and a FLAC, separated with --workers 2."""
    root = tmp_path_factory.mktemp("library")
    lib = root / "lib"
    files = {"rock/x": write(lib / "rock" / "x.wav", 2.0, 1), "jazz/x": write(lib / "jazz" / "x.wav", 2.0, 2),
             "jazz/live/song": write(lib / "jazz" / "live" / "song.flac", 3.0, 3, format="FLAC")}
    corrupt = lib / "rock" / "broken.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    out = root / "O"
    first = cli(lib, "--out", out, "--model", "passthrough", "--workers", "2")
    return lib, files, corrupt, out, first


@ray_needed
def test_ray_batch_over_a_tree_with_a_corrupt_file_and_same_named_tracks(ray_library):
    lib, files, corrupt, out, r = ray_library
    assert r.returncode == 1, r.stderr  # one track failed
    assert "Traceback" not in r.stderr
    for track, src in files.items():
        assert vocals_equal_input(out, track, src), track  # rock/x and jazz/x each from their own file
        assert_complete(out, track, src)
    m = manifest(out)
    assert {t: e["status"] for t, e in m.items()} == {"rock/x": "done", "jazz/x": "done", "jazz/live/song": "done",
                                                      "rock/broken": "failed"}
    assert str(corrupt) in m["rock/broken"]["error"] and str(corrupt) in r.stderr
    assert not (out / "rock" / "broken").exists() and not partials(out)
    for e in m.values():  # what the manifest promises to keep: input, size, hash, model card hash, timings
        assert e["input"] == str(Path(lib, e["track"]).with_suffix(Path(e["input"]).suffix))
        assert e["size"] == Path(e["input"]).stat().st_size and len(e["sha256"]) == 64
        assert len(e["model_hash"]) == 64 and e["model"] == "passthrough" and e["elapsed"] >= 0
    # an actor per worker: at most 2 processes did all 4 tracks, each with 1 model thread for its 1 CPU
    assert len({e["worker"] for e in m.values()}) <= 2 and {e["threads"] for e in m.values()} == {1}
    assert "audio h per wall h with 2 worker(s)" in r.stderr  # summary (on stderr when tracks failed)
    assert "failed (1):" in r.stderr


@ray_needed
def test_ray_rerun_skips_everything_done(ray_library):
    lib, files, corrupt, out, _ = ray_library
    stamps = {t: (out / t / "vocals.wav").stat().st_mtime_ns for t in files}
    r = cli(lib, "--out", out, "--model", "passthrough", "--workers", "2")
    assert r.returncode == 1, r.stderr  # the corrupt file is tried again, and fails again
    assert "4 track(s): 0 separated, 3 already done (skipped), 1 failed" in r.stderr
    assert {t: (out / t / "vocals.wav").stat().st_mtime_ns for t in files} == stamps  # not rewritten


@ray_needed
def test_ray_batch_stopped_midway_resumes_to_completion(tmp_path):
    lib = tmp_path / "lib"
    srcs = {f"t{i}": write(lib / f"t{i}.wav", 60.0, i, subtype="PCM_16") for i in range(8)}
    out = tmp_path / "O"
    proc = start_cli(lib, "--out", out, "--model", "dsp-center", "--workers", "2", "--format", "flac")
    deadline = time.monotonic() + 240
    while sum(e["status"] == "done" for e in manifest(out).values()) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the batch did not get going"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # stopped mid-way: like Ctrl-C, or a scheduler ending the job
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    m = manifest(out)
    done = {t for t, e in m.items() if e["status"] == "done"}
    assert 2 <= len(done) < len(srcs), m  # stopped part way
    for track, src in srcs.items():  # nothing half-written: a track has all its stems, whole, or none
        if track in done:
            assert_complete(out, track, src, "flac")
        else:
            assert not any((out / track / f"{s}.flac").exists() for s in STEMS), track
    assert not partials(out)  # the stopped workers' temporaries are gone too
    r = cli(lib, "--out", out, "--model", "dsp-center", "--workers", "2", "--format", "flac")
    assert r.returncode == 0, r.stderr
    assert f"8 track(s): {8 - len(done)} separated, {len(done)} already done" in r.stdout, r.stdout
    assert all(e["status"] == "done" for e in manifest(out).values()) and len(manifest(out)) == 8
    for track, src in srcs.items():
        assert_complete(out, track, src, "flac")
    assert not partials(out)


def kill_worker_of_long_track(tmp_path, *extra):
    """A batch of one long and three short tracks on 2 workers; the long one's worker is SIGKILLed mid-write."""
    lib = tmp_path / "lib"
    long = write(lib / "long.wav", 150.0, 0, subtype="PCM_16")  # dsp-center: seconds, enough to be killed in
    short = [write(lib / f"s{i}.wav", 5.0, i + 1, subtype="PCM_16") for i in range(3)]
    out = tmp_path / "O"
    proc = start_cli(lib, "--out", out, "--model", "dsp-center", "--workers", "2", *extra)
    deadline = time.monotonic() + 240
    while not (manifest(out).get("long", {}).get("status") == "running" and partials(out / "long")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the long track never started"
        time.sleep(0.005)
    victim = manifest(out)["long"]["worker"]
    os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)  # mid-write: its .partial files are open
    proc_out, err = proc.communicate(timeout=240)
    return proc, proc_out, err, out, long, short, victim


@ray_needed
def test_ray_worker_killed_mid_task_its_track_still_completes(tmp_path):
    proc, proc_out, err, out, long, short, victim = kill_worker_of_long_track(tmp_path)
    assert proc.returncode == 0, err
    final = manifest(out)["long"]
    assert final["status"] == "done" and final["worker"] != victim  # retried on another worker
    assert "1 worker process(es) died; their tracks were retried" in proc_out
    for src in (long, *short):
        assert_complete(out, src.stem, src)
    assert not partials(out)  # the dead worker's temporaries were removed when the track was redone


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_session(sid: int) -> None:
    """SIGKILL every process left in session ``sid`` (one we started; Ray's agents outlive their raylet)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        left = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == sid and fields[0] != "Z":
                    left += 1
                    os.kill(int(stat.parent.name), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
        if not left:
            return
        time.sleep(0.2)


@pytest.fixture
def ray_head():
    """``ray start --head --block`` with 2 CPUs, token authentication (Ray's default) and this checkout's code.

    Its own temporary folder (short: Ray's socket paths must fit 107 bytes), so the machine's
    /tmp/ray/ray_current_cluster is left alone. Yields (address, the process, the client environment).
    """
    import shutil
    import tempfile

    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")
    client = {**env(), "RAY_AUTH_MODE": "token"}
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", "--num-cpus", "2", "--port", str(_free_port()), "--temp-dir", temp,
         "--include-dashboard", "false", "--dashboard-agent-listen-port", str(_free_port()),
         "--metrics-export-port", str(_free_port()), "--disable-usage-stats"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(), start_new_session=True)
    try:
        address, seen = None, []
        for line in head.stdout:  # "ray start --address='IP:PORT'" once it is up
            seen.append(line)
            if "ray start --address=" in line:
                address = line.split("--address=")[1].strip().strip("'\"")
                break
        assert address, "".join(seen)
        yield address, head, client
    finally:
        _kill_session(head.pid)
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


@ray_needed
def test_ray_address_joins_a_running_cluster_and_leaves_it_running(tmp_path, ray_head):
    address, head, client = ray_head
    lib = tmp_path / "lib"
    srcs = {f"d{i}/t": write(lib / f"d{i}" / "t.wav", 1.0, i) for i in range(3)}
    out = tmp_path / "O"
    r = cli(lib, "--out", out, "--model", "passthrough", "--ray-address", address, "--worker-cpus", "2", env_=client)
    assert r.returncode == 0, r.stderr
    assert "with 1 worker(s)" in r.stdout  # the cluster's 2 CPUs, 2 per worker
    assert {e["threads"] for e in manifest(out).values()} == {2}  # one model thread per CPU it was given
    for track, src in srcs.items():
        assert vocals_equal_input(out, track, src), track
    assert head.poll() is None  # the cluster is not ours to stop
    assert subprocess.run(["ray", "status", "--address", address], capture_output=True, env=client).returncode == 0


@ray_needed
def test_ray_track_whose_worker_dies_more_than_retries_fails_and_the_batch_goes_on(tmp_path):
    proc, proc_out, err, out, long, short, victim = kill_worker_of_long_track(tmp_path, "--retries", "0")
    assert proc.returncode == 1, err  # one track failed
    final = manifest(out)["long"]
    assert final["status"] == "failed" and "worker process died 1 times" in final["error"]
    assert str(long) in final["error"] and str(long) in err  # named in the summary
    for src in short:  # the other tracks were still separated
        assert_complete(out, src.stem, src)
    assert not (out / "long").exists() and not partials(out)  # the dead worker's files were cleaned up
