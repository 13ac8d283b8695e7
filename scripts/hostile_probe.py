#!/usr/bin/env python3
"""A hostile probe of stemstream: cases a careless user or a local attacker would try, beyond the
ones issue 24 lists (those have tests in tests/test_security.py, test_hostile.py, test_hostile_gui.py).

Each case runs in a child process of its own with a time limit (a hang is a failure, not a stuck
probe), against real parts: the CLI as a subprocess, the OSC server over UDP on 127.0.0.1, real
files, FIFOs, symlinks. A case *holds* when stemstream answers with a clear message (or does the
right thing), within its time, and nothing it printed or logged holds a traceback.

    python scripts/hostile_probe.py [--logs DIR] [--repo PATH] [--only NAME ...] [--json FILE]

``--repo`` runs the cases against another checkout (e.g. the main branch); ``--against`` that
run's ``--json`` labels each case *held* (held there too), *fixed* (failed there) or FAILED. Every case writes ``DIR/<case>.log`` (its commands, their output, the engine's log);
``grep -r Traceback DIR`` is empty when every case holds. Exit status: the number of cases failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
CASES: dict[str, tuple[str, str, object]] = {}  # name -> (area, what is tried, function)


def case(name: str, area: str, what: str):
    def register(fn):
        CASES[name] = (area, what, fn)
        return fn
    return register


class Probe:
    """What a case gets: a scratch folder, a log, the CLI, a WAV writer and an OSC server + client."""

    def __init__(self, tmp: Path, log):
        self.tmp, self.log = tmp, log

    def say(self, text: str) -> None:
        self.log.write(text.rstrip("\n") + "\n")
        self.log.flush()

    def cli(self, *args, timeout: float = 120, env: dict | None = None, stdin=None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "stream_engine.cli", *map(str, args)]
        self.say(f"$ stemstream {' '.join(map(str, args))}")
        r = subprocess.run(cmd, capture_output=True, text=True, errors="backslashreplace", timeout=timeout,
                           env={**os.environ, **(env or {})},
                           cwd=self.tmp, stdin=stdin)
        self.say(f"exit {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}")
        return r

    def wav(self, name: str, seconds: float = 0.3, rate: int = 44100, channels: int = 2, **kw) -> Path:
        import numpy as np
        import soundfile as sf

        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        x = (0.1 * np.random.default_rng(0).standard_normal((max(int(seconds * rate), 1), channels))).astype("float32")
        sf.write(path, x, rate, **kw)
        return path

    def osc(self, stems=("vocals", "accompaniment")):
        from stream_engine.osc import OscServer
        from stream_engine.params import ParamStore, Params

        store = ParamStore(Params.for_stems(list(stems)))
        server = OscServer(store, list(stems), lambda: {}, port=0, meter_hz=0)
        return server, store, OscClient(server.port, self)


class OscClient:
    def __init__(self, port: int, probe: Probe):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.dest, self.probe = ("127.0.0.1", port), probe

    def raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.dest)

    def send(self, address: str, *args) -> None:
        from pythonosc.osc_message_builder import build_msg

        self.probe.say(f"osc> {address} {list(args)!r}"[:300])
        self.raw(build_msg(address, list(args)).dgram)

    def replies(self, seconds: float = 1.5, until=None) -> list[tuple[str, list]]:
        from pythonosc.osc_packet import OscPacket

        got, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data, _ = self.sock.recvfrom(65536)
            except OSError:
                continue
            for m in OscPacket(data).messages:
                got.append((m.message.address, list(m.message.params)))
                self.probe.say(f"osc< {m.message.address} {list(m.message.params)!r}"[:400])
            if until and any(until(a, p) for a, p in got):
                break
        return got

    def error_for(self, address: str, seconds: float = 5.0) -> str | None:
        got = self.replies(seconds, until=lambda a, p: a == "/stemstream/error" and p[:1] == [address])
        return next((p[1] for a, p in got if a == "/stemstream/error" and p[:1] == [address]), None)


def clean(r: subprocess.CompletedProcess) -> bool:
    return "Traceback" not in r.stdout + r.stderr


# ---- scenes (the app's and OSC's) -------------------------------------------------------------------
def _scenes(p: Probe) -> Path:
    folder = p.tmp / "config" / "scenes"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["STEMSTREAM_CONFIG_DIR"] = str(p.tmp / "config")
    return folder


@case("scene-wrong-types", "scenes", "a scene with valid JSON but wrong types (guide 'loud', a stem 5) over OSC")
def _(p):
    (_scenes(p) / "odd.json").write_text(json.dumps({"stemstream_scene": 1, "guide": "loud", "stems": {"vocals": 5},
                                                      "fx_params": "nope"}))
    server, store, c = p.osc()
    try:
        c.send("/stemstream/scene/load", "odd")
        err = c.error_for("/stemstream/scene/load")
        return bool(err) and "odd" in err and store.current.guide != "loud", err
    finally:
        server.close()


@case("scene-symlink-out", "scenes", "a scene that is a symlink to /etc/passwd: nothing of it may come back")
def _(p):
    (_scenes(p) / "pw.json").symlink_to("/etc/passwd")
    server, store, c = p.osc()
    try:
        c.send("/stemstream/scene/load", "pw")
        err = c.error_for("/stemstream/scene/load") or ""
        return bool(err) and "root:" not in err and "JSON" in err, err
    finally:
        server.close()


@case("scene-preset-path", "scenes", "a scene whose effect chain is a preset *path* (/tmp/x.json)")
def _(p):
    preset = p.tmp / "x.json"
    preset.write_text(json.dumps({"effects": [{"type": "Gain"}]}))
    (_scenes(p) / "pp.json").write_text(json.dumps({"stemstream_scene": 1, "fx": {"vocals": str(preset)}}))
    from stream_engine.scenes import load_scene

    try:
        load_scene("pp")
    except ValueError as exc:
        p.say(f"refused: {exc}")
        return "plain name" in str(exc), str(exc)
    return False, "loaded"


@case("scene-plugin-dotdot", "scenes", "a scene whose VST3 path climbs out of /usr/lib/vst3 with '..'")
def _(p):
    (_scenes(p) / "dd.json").write_text(json.dumps({"stemstream_scene": 1, "fx": {"vocals": [
        {"type": "vst3", "path": "/usr/lib/vst3/../../../tmp/Evil.vst3"}]}}))
    from stream_engine.scenes import load_scene

    try:
        load_scene("dd")
    except ValueError as exc:
        p.say(f"refused: {exc}")
        return "'..'" in str(exc), str(exc)
    return False, "loaded"


@case("scene-names", "scenes", "scene names over OSC: 65 characters, right-to-left override, a NUL, '.', '~'")
def _(p):
    _scenes(p)
    server, store, c = p.osc()
    try:
        answers = []
        for name in ("n" * 65, "a\u202eb", ".", "~", "con/sole", "..."):
            c.send("/stemstream/scene/save", name)
            answers.append(c.error_for("/stemstream/scene/save"))
        written = [q.name for q in (p.tmp / "config" / "scenes").iterdir()]
        p.say(f"files: {written}")
        return all(answers) and not written, f"{sum(map(bool, answers))}/6 refused, files {written}"
    finally:
        server.close()


@case("scene-huge-number", "scenes", "a scene with key 1e308 and gain NaN-like values")
def _(p):
    (_scenes(p) / "big.json").write_text('{"stemstream_scene": 1, "key": 1e308, "guide": -1e308, '
                                         '"stems": {"vocals": {"gain": 1e999}}}')
    server, store, c = p.osc()
    try:
        c.send("/stemstream/scene/load", "big")
        got = c.replies(3, until=lambda a, q: a in ("/stemstream/scene/loaded", "/stemstream/error"))
        cur = store.current
        ok = -12 <= cur.key <= 12 and 0 <= cur.stem("vocals").gain <= 2 and 0 <= cur.guide <= 1
        return ok and bool(got), f"key {cur.key}, gain {cur.stem('vocals').gain}, replies {got[:1]}"
    finally:
        server.close()


# ---- presets ----------------------------------------------------------------------------------------
@case("fx-preset-list-of-junk", "presets", "--fx vocals=PRESET.json where the preset is [1, 2, 3]")
def _(p):
    preset = p.tmp / "junk.json"
    preset.write_text("[1, 2, 3]")
    r = p.cli("separate", p.wav("s.wav"), "--out", "O", "--model", "passthrough", "--fx", f"vocals={preset}",
              "--quiet")
    return clean(r) and r.returncode in (0, 1, 2), f"exit {r.returncode}"


@case("fx-preset-bad-params", "presets", "a preset whose Gain takes gain_db='loud' and an unknown parameter")
def _(p):
    preset = p.tmp / "bad.json"
    preset.write_text(json.dumps({"effects": [{"type": "Gain", "params": {"gain_db": "loud"}},
                                              {"type": "Reverb", "params": {"no_such": 1}}]}))
    r = p.cli("separate", p.wav("s.wav"), "--out", "O", "--model", "passthrough", "--fx", f"vocals={preset}",
              "--quiet")
    return clean(r) and r.returncode == 0 and "bypassed" in r.stderr, f"exit {r.returncode}"


@case("fx-preset-type-tricks", "presets", "effect types that are not effects: __class__, load_plugin, VST3Plugin")
def _(p):
    from plugins.effects import EffectChain

    chain = EffectChain([{"type": t} for t in ("__class__", "load_plugin", "VST3Plugin", "Pedalboard")], 48000, 2)
    errors = [s.error for s in chain.slots]
    for e in errors:
        p.say(f"slot: {e}")
    return all(s.bypassed for s in chain.slots[:3]), f"{sum(s.bypassed for s in chain.slots)} of 4 bypassed"


@case("fx-preset-fifo", "presets", "--fx vocals=PIPE.json where the preset is a FIFO")
def _(p):
    os.mkfifo(p.tmp / "pipe.json")
    r = p.cli("separate", p.wav("s.wav"), "--out", "O", "--model", "passthrough", "--fx",
              f"vocals={p.tmp / 'pipe.json'}", "--quiet", timeout=60)
    return clean(r) and r.returncode == 2 and "FIFO" in r.stderr, f"exit {r.returncode}"


@case("daw-preset-junk", "presets", "DAW presets that are a list, or hold messages that are numbers")
def _(p):
    from stream_engine.osc.daw import load_daw_preset

    results = []
    for body in ("[1, 2]", '{"port": 1, "messages": [5]}', '{"port": 1, "messages": [{"on": "gain"}]}'):
        f = p.tmp / f"d{len(results)}.json"
        f.write_text(body)
        try:
            load_daw_preset(str(f))
            results.append(False)
        except ValueError as exc:
            p.say(f"refused: {exc}")
            results.append(True)
    return all(results), f"{sum(results)}/3 refused with a message"


# ---- list files -------------------------------------------------------------------------------------
@case("list-names-itself", "lists", "a list file that names itself and a list naming a list")
def _(p):
    good = p.wav("a.wav")
    (p.tmp / "inner.txt").write_text(f"{good}\n")
    (p.tmp / "self.txt").write_text(f"self.txt\ninner.txt\n{good}\n")
    r = p.cli("separate", "self.txt", "--out", "O", "--model", "passthrough", "--quiet", timeout=120)
    return clean(r) and (p.tmp / "O" / "a" / "vocals.wav").exists(), f"exit {r.returncode}"


@case("list-is-fifo", "lists", "a list file (songs.txt) that is a FIFO")
def _(p):
    os.mkfifo(p.tmp / "songs.txt")
    r = p.cli("separate", "songs.txt", p.wav("b.wav"), "--out", "O", "--model", "passthrough", "--quiet", timeout=60)
    return clean(r) and "FIFO" in r.stderr and (p.tmp / "O" / "b" / "vocals.wav").exists(), f"exit {r.returncode}"


@case("list-binary-garbage", "lists", "a list file of random bytes, ~nosuchuser/ paths and a NUL in a name")
def _(p):
    junk = os.urandom(3000) + b"\n~nosuchuser/x.wav\n~\xff\xfe/y.wav\nnul\x00byte.wav\n"
    (p.tmp / "junk.m3u").write_bytes(junk)
    r = p.cli("separate", "junk.m3u", "--out", "O", "--model", "passthrough", "--quiet", timeout=180)
    return clean(r) and r.returncode >= 1, f"exit {r.returncode}"


@case("list-odd-names", "lists", "inputs whose names hold a newline, non-UTF-8 bytes and a leading dash")
def _(p):
    names = ["new\nline.wav", "-dash.wav"]
    for n in names:
        p.wav(n)
    raw = os.fsencode(p.tmp) + b"/caf\xe9.wav"
    with open(raw, "wb") as f:
        f.write((p.tmp / "-dash.wav").read_bytes())
    r = p.cli("separate", "--out", "O", "--model", "passthrough", "--quiet", "--", *names, os.fsdecode(raw))
    manifest = (p.tmp / "O" / "stemstream-manifest.jsonl").read_text()
    return clean(r) and r.returncode == 0 and manifest.count('"done"') == 3, f"exit {r.returncode}"


# ---- the manifest ------------------------------------------------------------------------------------
@case("manifest-garbage", "manifest", "a manifest of binary junk, non-object lines and a track named 5")
def _(p):
    out = p.tmp / "O"
    out.mkdir()
    (out / "stemstream-manifest.jsonl").write_bytes(os.urandom(500) + b'\n[1]\n{"track": 5}\n"x"\n')
    r = p.cli("separate", p.wav("s.wav"), "--out", out, "--model", "passthrough", "--quiet")
    return clean(r) and r.returncode == 0 and (out / "s" / "vocals.wav").exists(), f"exit {r.returncode}"


@case("manifest-fifo", "manifest", "the manifest is a FIFO (a run must not wait on it for ever)")
def _(p):
    out = p.tmp / "O"
    out.mkdir()
    os.mkfifo(out / "stemstream-manifest.jsonl")
    r = p.cli("separate", p.wav("s.wav"), "--out", out, "--model", "passthrough", "--quiet", timeout=60)
    return clean(r) and r.returncode == 2 and "FIFO" in r.stderr, f"exit {r.returncode}"


@case("manifest-lock-fifo", "manifest", "the manifest's lock file is a FIFO")
def _(p):
    out = p.tmp / "O"
    out.mkdir()
    os.mkfifo(out / ".stemstream-manifest.lock")
    r = p.cli("separate", p.wav("s.wav"), "--out", out, "--model", "passthrough", "--quiet", timeout=60)
    return clean(r) and r.returncode == 2 and "lock" in r.stderr, f"exit {r.returncode}"


@case("manifest-is-folder", "manifest", "the manifest's name is taken by a folder")
def _(p):
    out = p.tmp / "O"
    (out / "stemstream-manifest.jsonl").mkdir(parents=True)
    r = p.cli("separate", p.wav("s.wav"), "--out", out, "--model", "passthrough", "--quiet", timeout=60)
    return clean(r) and r.returncode == 2 and "folder" in r.stderr, f"exit {r.returncode}"


# ---- audio and cards -----------------------------------------------------------------------------------
@case("audio-odd-rates", "audio", "WAVs at 1 Hz, 8 Hz and 768 kHz, and one with 64 channels")
def _(p):
    files = [p.wav("r1.wav", seconds=5, rate=1), p.wav("r8.wav", seconds=2, rate=8),
             p.wav("r768k.wav", seconds=0.05, rate=768000), p.wav("c64.wav", seconds=0.05, channels=64)]
    r = p.cli("separate", *files, "--out", "O", "--model", "passthrough", "--quiet", timeout=300)
    return clean(r) and r.returncode <= 4, f"exit {r.returncode}"


@case("audio-header-lies", "audio", "a WAV whose header promises 2^31 frames (1 KB file)")
def _(p):
    import struct

    data = b"\x00\x01" * 512
    header = b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 44100, 88200, 2, 16)
    (p.tmp / "lie.wav").write_bytes(header + b"data" + struct.pack("<I", 0xFFFFFFF0) + data)
    r = p.cli("separate", "lie.wav", "--out", "O", "--model", "passthrough", "--quiet", timeout=120)
    return clean(r) and r.returncode in (0, 1), f"exit {r.returncode}"


@case("eval-fifo-stem", "audio", "eval over a folder where one stem file is a FIFO")
def _(p):
    t = p.tmp / "data" / "t"
    p.wav("data/t/vocals.wav", seconds=1)
    os.mkfifo(t / "accompaniment.wav")
    r = p.cli("eval", p.tmp / "data", "--model", "dsp-center", "--quiet", timeout=60)
    return clean(r) and r.returncode == 2 and "FIFO" in r.stdout + r.stderr, f"exit {r.returncode}"


@case("card-types", "cards", "cards with sample_rate 'x', 10 000 stems, a stem 'a/b', stems 'Vocals'+'vocals'")
def _(p):
    ok = []
    for i, changes in enumerate(({"sample_rate": "x"}, {"stems": [f"s{i}" for i in range(10000)]},
                                 {"stems": ["a/b", "c"]}, {"stems": ["Vocals", "vocals"]}, {"profiles": [1]},
                                 {"state": [{"name": "h", "shape": [1 << 20, 1 << 20]}], "stateful": True})):
        folder = p.tmp / f"m{i}"
        folder.mkdir()
        (folder / "m.onnx").write_bytes(b"x")
        card = {"name": "m", "format": "onnx", "sample_rate": 44100, "stems": ["v", "a"], "channels": 2,
                "window": 4096, "hop": 2048, "lookahead": 1024, "fade": 512, "stateful": False, **changes}
        (folder / "m.json").write_text(json.dumps(card))
        r = p.cli("separate", p.wav("s.wav"), "--out", "O", "--model", folder / "m.onnx", "--quiet")
        ok.append(clean(r) and r.returncode == 2 and "m.json" in r.stderr)
    return all(ok), f"{sum(ok)}/{len(ok)} refused naming the card"


@case("model-fifo", "cards", "--model PIPE.onnx where the model, or its card, is a FIFO")
def _(p):
    os.mkfifo(p.tmp / "pipe.onnx")
    (p.tmp / "m.onnx").write_bytes(b"x")
    os.mkfifo(p.tmp / "m.json")
    a = p.cli("separate", p.wav("s.wav"), "--out", "O", "--model", "pipe.onnx", "--quiet", timeout=60)
    b = p.cli("separate", p.wav("s.wav"), "--out", "O", "--model", "m.onnx", "--quiet", timeout=60)
    return clean(a) and clean(b) and a.returncode == 2 and b.returncode == 2, f"exit {a.returncode}, {b.returncode}"


# ---- OSC -----------------------------------------------------------------------------------------------
@case("osc-nested-bundles", "osc", "a bundle nested 2000 deep, and a bundle whose element size lies")
def _(p):
    import struct

    server, store, c = p.osc()
    try:
        inner = b"#bundle\x00" + b"\x00" * 8
        for _ in range(2000):
            inner = b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", len(inner)) + inner
        c.raw(inner)
        c.raw(b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", 10 ** 6) + b"/x\x00\x00,\x00\x00\x00")
        got = c.replies(2)
        c.send("/stemstream/get/stem/vocals/gain")
        alive = c.replies(2, until=lambda a, q: a == "/stemstream/stem/vocals/gain")
        return any(a == "/stemstream/stem/vocals/gain" for a, _ in alive), f"{len(got)} replies, still serving"
    finally:
        server.close()


@case("osc-args-flood", "osc", "one message with 5000 arguments, blobs, NaN and inf values")
def _(p):
    server, store, c = p.osc()
    try:
        c.send("/stemstream/stem/vocals/gain", *([0.5] * 5000))
        e1 = c.error_for("/stemstream/stem/vocals/gain")
        c.send("/stemstream/stem/vocals/gain", b"\x00\x01")
        e2 = c.error_for("/stemstream/stem/vocals/gain")
        c.send("/stemstream/karaoke/guide", float("nan"))
        e3 = c.error_for("/stemstream/karaoke/guide")
        c.send("/stemstream/karaoke/key", float("inf"))
        e4 = c.error_for("/stemstream/karaoke/key")
        return all((e1, e2, e3, e4)) and store.current.stem("vocals").gain == 1.0, "all answered"
    finally:
        server.close()


@case("osc-subscriber-cap", "osc", "500 subscriptions to other ports, and one to a remote host")
def _(p):
    server, store, c = p.osc()
    try:
        for port in range(20000, 20500):
            c.send("/stemstream/subscribe", "127.0.0.1", port)
        c.send("/stemstream/subscribe", "10.1.2.3", 9000)
        err = c.error_for("/stemstream/subscribe")
        time.sleep(0.5)
        return len(server.subscribers) <= 64 and bool(err), f"{len(server.subscribers)} subscribers kept"
    finally:
        server.close()


@case("osc-model-path", "osc", "/stemstream/model with a model file path and /input file: a FIFO (app front end)")
def _(p):
    from stream_engine.osc.server import osc_input_choice, osc_model_choice

    os.mkfifo(p.tmp / "f.wav")
    refused = []
    for fn, value in ((osc_model_choice, str(p.tmp / "evil.onnx")), (osc_model_choice, "../x.pt"),
                      (osc_input_choice, f"file:{p.tmp / 'f.wav'}"), (osc_input_choice, "file:/dev/zero")):
        try:
            fn(value)
            refused.append(False)
        except ValueError as exc:
            p.say(f"refused: {exc}")
            refused.append(True)
    return all(refused), f"{sum(refused)}/4 refused"


@case("osc-get-patterns", "osc", "get with patterns and deep paths: get/meter/*, get/fx/[/0/x, get/" + "a/" * 200)
def _(p):
    server, store, c = p.osc()
    try:
        answers = []
        for path in ("meter/*", "fx/[/0/x", "a/" * 200, "stem/{vocals,/gain"):
            c.send("/stemstream/get/" + path)
            answers.append(c.error_for("/stemstream/get/" + path))
        return all(answers), f"{sum(map(bool, answers))}/4 answered"
    finally:
        server.close()


# ---- Ray and resources ------------------------------------------------------------------------------------
@case("ray-bad-options", "ray", "--workers -3, --worker-cpus 0, --retries -1, --ray-address garbage")
def _(p):
    s = p.wav("s.wav")
    rs = [p.cli("separate", s, "--out", "O", "--model", "passthrough", "--quiet", *extra, timeout=90)
          for extra in (["--workers", "-3"], ["--worker-cpus", "0", "--workers", "1"],
                        ["--ray-address", "::::"], ["--ray-address", "127.0.0.1:99999"])]
    return all(clean(r) and r.returncode == 2 for r in rs), f"exits {[r.returncode for r in rs]}"


@case("resource-nofile", "resources", "separate with only 16 file descriptors allowed")
def _(p):
    files = [p.wav(f"f{i}.wav") for i in range(3)]
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16)); "
            "from stream_engine.cli import main; sys.exit(main(sys.argv[1:]))")
    p.say("$ (RLIMIT_NOFILE 16) stemstream separate ...")
    r = subprocess.run([sys.executable, "-c", code, "separate", *map(str, files), "--out", "O", "--model",
                        "passthrough", "--quiet"], capture_output=True, text=True, timeout=180, cwd=p.tmp)
    p.say(f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return clean(r), f"exit {r.returncode}"


@case("resource-memory", "resources", "separate under a 1.5 GiB address-space limit with a 10-minute input")
def _(p):
    f = p.wav("long.wav", seconds=600, rate=22050, channels=1, subtype="PCM_16")
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29)); "
            "from stream_engine.cli import main; sys.exit(main(sys.argv[1:]))")
    p.say("$ (RLIMIT_AS 1.5 GiB) stemstream separate long.wav ...")
    r = subprocess.run([sys.executable, "-c", code, "separate", str(f), "--out", "O", "--model", "dsp-center",
                        "--quiet"], capture_output=True, text=True, timeout=600, cwd=p.tmp)
    p.say(f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return clean(r) and r.returncode in (0, 1, 2), f"exit {r.returncode}"


@case("gui-json-device", "app", "gui.json a symlink to /dev/zero (the app's settings loader)")
def _(p):
    folder = p.tmp / "config"
    folder.mkdir()
    (folder / "gui.json").symlink_to("/dev/zero")
    from gui.settings import Settings

    s = Settings(folder / "gui.json")
    p.say(f"problem: {s.problem}")
    aside = folder / "gui.json.broken"  # moved aside as the link it is: a copy of /dev/zero never ends
    return bool(s.problem) and "device" in s.problem and aside.is_symlink(), s.problem


# ---- running ---------------------------------------------------------------------------------------------
def run_one(name: str, log_path: Path) -> dict:
    area, what, fn = CASES[name]
    with open(log_path, "w", errors="backslashreplace") as log, tempfile.TemporaryDirectory(prefix=f"probe-{name}-") as tmp:
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("log %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        probe = Probe(Path(tmp), log)
        probe.say(f"# {name} ({area}): {what}")
        try:
            ok, detail = fn(probe)
        except subprocess.TimeoutExpired as exc:
            ok, detail = False, f"hung: {exc.cmd[-8:]} did not finish in {exc.timeout} s"
        except Exception as exc:  # noqa: BLE001 - a probe case that raises is a finding, said in one line
            ok, detail = False, f"raised {type(exc).__name__}: {exc}"[:300]
        probe.say(f"result: {'held' if ok else 'FAILED'}: {detail}")
    return {"case": name, "area": area, "what": what, "held": bool(ok), "detail": str(detail)[:300]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--logs", default="probe-logs", help="folder for one log per case")
    ap.add_argument("--repo", default=str(HERE), help="checkout to probe (its stream_engine, gui, plugins)")
    ap.add_argument("--only", nargs="*", help="run only these cases")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--against", metavar="JSON",
                    help="results of an earlier run (--json), e.g. on the main branch: each case is then "
                         "labelled held (held there too), fixed (failed there) or FAILED")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    ap.add_argument("--timeout", type=float, default=240, help="seconds a case may take (a hang fails it)")
    args = ap.parse_args(argv)
    logs = Path(args.logs).resolve()
    if args.case:
        result = run_one(args.case, logs / f"{args.case}.log")
        print(json.dumps(result))
        return 0
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([args.repo, os.environ.get("PYTHONPATH", "")]),
           "QT_QPA_PLATFORM": "offscreen"}
    env.pop("STEMSTREAM_VST3_PATH", None)
    results = []
    for name in args.only or list(CASES):
        t0 = time.monotonic()
        try:
            r = subprocess.run([sys.executable, __file__, "--case", name, "--logs", str(logs)], capture_output=True,
                               text=True, timeout=args.timeout, env=env, cwd=args.repo)
            line = (r.stdout.strip().splitlines() or [""])[-1]
            try:
                result = json.loads(line)
            except ValueError:
                result = {"case": name, "area": CASES[name][0], "what": CASES[name][1], "held": False,
                          "detail": f"the case process died (exit {r.returncode})"}
                with open(logs / f"{name}.log", "a") as log:
                    log.write(f"case process exit {r.returncode}\n{r.stderr[-3000:]}\n")
        except subprocess.TimeoutExpired:
            result = {"case": name, "area": CASES[name][0], "what": CASES[name][1], "held": False,
                      "detail": f"hung: no answer within {args.timeout:.0f} s"}
        result["seconds"] = round(time.monotonic() - t0, 1)
        results.append(result)
        print(f"{'held ' if result['held'] else 'FAIL '} {name:24s} {result['seconds']:6.1f} s  {result['detail']}",
              flush=True)
    if args.against:
        before = {r["case"]: r["held"] for r in json.loads(Path(args.against).read_text())["results"]}
        for r in results:
            r["label"] = ("held" if before.get(r["case"], False) else "fixed") if r["held"] else "FAILED"
        print("\n" + "\n".join(f"{r['label']:6s} {r['case']}" for r in results))
    tracebacks = [p.name for p in logs.glob("*.log") if "Traceback" in p.read_text(errors="replace")]
    failed = sum(not r["held"] for r in results)
    print(f"\n{len(results) - failed} of {len(results)} cases held; logs with a traceback: {tracebacks or 'none'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "tracebacks": tracebacks}, indent=1))
    return min(failed + len(tracebacks), 100)


if __name__ == "__main__":
    raise SystemExit(main())
