"""Attacks on the ways in (SECURITY.md), each made for real: a VST3-shaped shared library whose
constructor writes a marker file, a python-osc client over UDP on 127.0.0.1, real model cards,
a FIFO, deeply nested JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient

from stream_engine.params import ParamStore, Params

ROOT = Path(__file__).resolve().parents[1]

C_SOURCE = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("constructor ran\n", f); fclose(f); }
}
"""


def build_vst3(folder: Path, marker: Path, name: str = "Evil") -> Path:
    """A VST3-shaped bundle ``folder/<name>.vst3/Contents/x86_64-linux/<name>.so`` whose library's
    constructor writes ``marker`` the moment anything dlopens it."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the test library")
    bundle = folder / f"{name}.vst3"
    lib_dir = bundle / "Contents" / "x86_64-linux"
    lib_dir.mkdir(parents=True)
    src = folder / f"{name}.c"
    src.write_text(C_SOURCE)
    subprocess.run([cc, "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(lib_dir / f"{name}.so"), str(src)],
                   check=True)
    return bundle


class Client:
    """python-osc's UDP client on 127.0.0.1, plus a socket of its own bound for the replies."""

    def __init__(self, port: int):
        self.osc = SimpleUDPClient("127.0.0.1", port)
        self.sock = self.osc._sock
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.received: list[tuple[str, list]] = []

    def send(self, address, *args):
        self.osc.send_message(address, list(args))

    def wait_for(self, address, match=lambda a: True, timeout=20.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for addr, args in self.received:
                if addr == address and match(args):
                    return args
            try:
                data, _ = self.sock.recvfrom(65536)
            except OSError:
                continue
            msg = OscMessage(data)
            self.received.append((msg.address, list(msg.params)))
        raise AssertionError(f"no {address} within {timeout} s; got {self.received[-10:]}")


def write_scene(path: Path, plugin_path: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "stemstream_scene": 1, "listen": "full",
        "stems": {"vocals": {"gain": 0.7, "mute": False, "solo": False}},
        "fx": {"vocals": [{"type": "vst3", "path": plugin_path}]},
    }))


@pytest.fixture
def live_osc(tmp_path, monkeypatch):
    """A playing engine (dsp-center, paced) with LiveControl and the OSC server, as `stemstream live` has."""
    from stream_engine.control import ChainSpec, LiveControl
    from stream_engine.osc import OscServer
    from stream_engine.pipeline import Pipeline
    from stream_engine.profiles import get_profile
    from stream_engine.realtime import RealtimeEngine
    from stream_engine.separators.registry import load_separator

    monkeypatch.setenv("STEMSTREAM_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("STEMSTREAM_VST3_PATH", raising=False)
    separator = load_separator("dsp-center", "live", sample_rate=48000)
    pipeline = Pipeline(separator, 48000, 2, get_profile("live"))
    engine = RealtimeEngine(pipeline, 256, store=ParamStore(Params.for_stems(pipeline.stems)))
    control = LiveControl(engine, ChainSpec("dsp-center", "live"))
    server = OscServer(engine.store, list(pipeline.stems), engine.status, port=0, meter_hz=0, controls=control)
    running = threading.Event()
    running.set()
    silence, out = np.zeros((256, 2), np.float32), np.zeros((256, 2), np.float32)

    def clock():
        while running.is_set():
            engine.callback(silence, out, 256, None, None)
            time.sleep(256 / 48000)

    engine.start(thread=True)
    t = threading.Thread(target=clock, daemon=True)
    t.start()
    try:
        yield server, engine, tmp_path / "config" / "scenes"
    finally:
        running.clear()
        t.join(5)
        engine.stop()
        server.close()
        control.close()


def test_osc_scene_cannot_load_a_plugin_from_outside_the_plugin_folders(live_osc, tmp_path, monkeypatch):
    """Hole 1: a scene naming a VST3 outside the plugin folders. By path (/tmp/x.json) the scene is
    refused; by name from the scenes folder it is refused too, because of its plugin; the library's
    constructor never runs; both answered on /stemstream/error. Control: the same library in a
    configured plugin folder does get loaded (its constructor runs), so the refusal is what stopped it."""
    server, engine, scenes = live_osc
    marker = tmp_path / "constructor-ran"
    bundle = build_vst3(tmp_path / "downloads", marker)
    write_scene(tmp_path / "downloads" / "evil.json", str(bundle))
    write_scene(scenes / "evil.json", str(bundle))
    client = Client(server.port)

    client.send("/stemstream/scene/load", str(tmp_path / "downloads" / "evil.json"))
    err = client.wait_for("/stemstream/error", lambda a: a[0] == "/stemstream/scene/load")
    assert "scene name" in err[1], err
    client.received.clear()
    client.send("/stemstream/scene/load", "evil")
    err = client.wait_for("/stemstream/error", lambda a: a[0] == "/stemstream/scene/load")
    assert "outside the plugin folders" in err[1] and str(bundle) in err[1], err
    time.sleep(1.0)  # a switch, had one started, builds its chain on another thread
    assert not marker.exists(), "the planted library's constructor ran"
    assert engine.store.current.stem("vocals").gain == 1.0  # a refused scene changes nothing

    # the control: configured as a plugin folder, the same library is loaded (and its constructor runs)
    monkeypatch.setenv("STEMSTREAM_VST3_PATH", str(tmp_path / "downloads"))
    client.received.clear()
    client.send("/stemstream/scene/load", "evil")
    client.wait_for("/stemstream/scene/loaded")
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the control failed: the test library was never loaded"


def test_presets_and_cli_fx_cannot_load_a_plugin_from_outside(tmp_path, monkeypatch):
    """The same rule where plugins are actually loaded (plugins/effects.Slot): a preset file naming an
    outside VST3 gets that slot bypassed with a message; the constructor never runs. Also a '..' escape
    from a plugin folder."""
    from plugins.effects import EffectChain

    monkeypatch.delenv("STEMSTREAM_VST3_PATH", raising=False)
    marker = tmp_path / "constructor-ran"
    bundle = build_vst3(tmp_path, marker)
    for path in (str(bundle), f"/usr/lib/vst3/../../..{bundle}"):
        chain = EffectChain([{"type": "vst3", "path": path}, {"type": "Gain", "params": {"gain_db": -6}}], 48000, 2)
        assert chain.slots[0].bypassed and "refused" in chain.slots[0].error or "'..'" in chain.slots[0].error
        assert not chain.slots[1].bypassed
    chain = EffectChain([{"type": "VST3Plugin"}], 48000, 2)  # pedalboard's own class, by type name
    assert chain.slots[0].bypassed
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../../evil", "/tmp/evil.json", "~/x.json", "a/b", "..", ".hidden", "a\\b",
                                  "tab\there", "", "n" * 65])
def test_osc_scene_save_takes_a_plain_name_only(tmp_path, monkeypatch, name):
    """Hole 2: /stemstream/scene/save with a path writes nothing anywhere; answered on /error."""
    from stream_engine.osc import OscServer

    monkeypatch.setenv("STEMSTREAM_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    store = ParamStore(Params.for_stems(["vocals", "accompaniment"]))
    server = OscServer(store, ["vocals", "accompaniment"], lambda: {}, port=0, meter_hz=0)
    client = Client(server.port)
    before = sorted(p for p in tmp_path.rglob("*"))
    try:
        client.send("/stemstream/scene/save", name)
        err = client.wait_for("/stemstream/error", lambda a: a[0] == "/stemstream/scene/save")
        assert "plain name" in err[1]
        client.send("/stemstream/scene/save", "fine name")  # and a name still works
        saved = client.wait_for("/stemstream/scene/saved")[0]
    finally:
        server.close()
    assert saved == str(tmp_path / "config" / "scenes" / "fine name.json")
    after = sorted(p for p in tmp_path.rglob("*"))
    assert set(after) - set(before) == {tmp_path / "config", tmp_path / "config" / "scenes", Path(saved)}


def test_one_name_rule_for_every_name():
    from stream_engine.untrusted import UntrustedInputError, plain_name

    for good in ("vocals", "live set 2", "a.b", "x_y-z+1"):
        assert plain_name(good) == good
    for bad in ("../x", "./../../x", "/abs", "a/b", "a\\b", "..", ".", "", " lead", "x\n", "a..b", "x\x00y", 5, None):
        with pytest.raises(UntrustedInputError):
            plain_name(bad)


def make_card(folder: Path, stems) -> Path:
    """A real ONNX model (identity per stem) with the given stems on its card."""
    import onnx
    from onnx import TensorProto, helper

    n = len(stems)
    x = helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 2, 4096])
    y = helper.make_tensor_value_info("stems", TensorProto.FLOAT, [1, n, 2, 4096])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 1, 2, 4096])
    reps = helper.make_tensor("reps", TensorProto.INT64, [4], [1, n, 1, 1])
    nodes = [helper.make_node("Reshape", ["audio", "shape"], ["r"]),
             helper.make_node("Tile", ["r", "reps"], ["t"]),
             helper.make_node("Mul", ["t", "half"], ["stems"])]
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [1.0 / n])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[shape, reps, half])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "evil.onnx"
    onnx.save(model, path)
    card = {"name": "evil", "format": "onnx", "sample_rate": 44100, "stems": list(stems), "channels": 2,
            "window": 4096, "hop": 2048, "lookahead": 1024, "fade": 512, "stateful": False, "output_span": "window"}
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def run_cli(*args, env=None, timeout=300):
    env = dict(os.environ if env is None else env, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "stream_engine.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("stems,words", [(["./../../x", "y"], "plain name"), (["vocals", "vocals"], "twice"),
                                         (["vocals", "instrumental"], "reserved"), (["karaoke", "v"], "reserved"),
                                         (["Vocals", "vocals"], "twice"), (["/etc/x", "y"], "plain name")])
def test_card_stem_names_cannot_escape_out(tmp_path, stems, words):
    """Hole 3: a real card whose stem tries ./../../x through `stemstream separate --out`: refused when
    the card loads (exit 2, message names the card), nothing written outside --out (or in it)."""
    import soundfile as sf

    models = tmp_path / "a" / "b" / "models"
    models.mkdir(parents=True)
    model = make_card(models, stems)
    song = tmp_path / "a" / "b" / "song.wav"
    sf.write(song, np.zeros((44100, 2), np.float32) + 0.01, 44100)
    out = tmp_path / "a" / "b" / "out"
    before = set(tmp_path.rglob("*"))
    r = run_cli("separate", str(song), "--out", str(out), "--model", str(model), "--quiet")
    assert r.returncode == 2, r.stdout + r.stderr
    assert words in r.stderr and "evil.json" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert set(tmp_path.rglob("*")) - before <= {out}  # at most the empty --out folder
    assert not (tmp_path / "a" / "x.wav").exists() and not (tmp_path / "x.wav").exists()


def test_scene_from_a_fifo_is_refused_without_blocking(tmp_path, monkeypatch):
    """Hole 4: a scene file that is a FIFO: /scene/load answers an error at once (the OSC surface still
    answers afterwards); nothing ever writes to the FIFO."""
    from stream_engine.osc import OscServer

    monkeypatch.setenv("STEMSTREAM_CONFIG_DIR", str(tmp_path))
    (tmp_path / "scenes").mkdir()
    os.mkfifo(tmp_path / "scenes" / "pipe.json")
    (tmp_path / "scenes" / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (tmp_path / "scenes" / "deep2.json").write_text('{"stemstream_scene": 1, "stems": ' + "[" * 500 + "]" * 500 + "}")
    (tmp_path / "scenes" / "huge.json").write_text(" " * (2 * 1024 * 1024) + "{}")
    store = ParamStore(Params.for_stems(["vocals", "accompaniment"]))
    server = OscServer(store, ["vocals", "accompaniment"], lambda: {}, port=0, meter_hz=0)
    client = Client(server.port)
    try:
        t0 = time.monotonic()
        client.send("/stemstream/scene/load", "pipe")
        err = client.wait_for("/stemstream/error", lambda a: a[0] == "/stemstream/scene/load", timeout=5)
        assert "FIFO" in err[1] and time.monotonic() - t0 < 5
        for name, words in (("deep", "nested"), ("deep2", "nested"), ("huge", "bytes")):
            client.received.clear()
            client.send("/stemstream/scene/load", name)
            err = client.wait_for("/stemstream/error", lambda a: a[0] == "/stemstream/scene/load", timeout=5)
            assert words in err[1] and name in err[1], err
        client.send("/stemstream/get/stem/vocals/gain")
        assert client.wait_for("/stemstream/stem/vocals/gain", timeout=5) == [1.0]
        assert server.counters["errors"] >= 4
    finally:
        server.close()


def test_deep_json_everywhere_is_a_message(tmp_path):
    """Deeply nested cards and presets: an error naming the file, not a RecursionError."""
    from plugins.effects import load_preset
    from stream_engine.separators.base import SeparatorError
    from stream_engine.separators.card import load_card

    deep = "[" * 50000 + "]" * 50000
    (tmp_path / "m.onnx").write_bytes(b"x")
    (tmp_path / "m.json").write_text(deep)
    with pytest.raises(SeparatorError, match="nested"):
        load_card(tmp_path / "m.onnx")
    (tmp_path / "p.json").write_text(deep)
    with pytest.raises(ValueError, match="nested"):
        load_preset(str(tmp_path / "p.json"))
    os.mkfifo(tmp_path / "f.json")
    with pytest.raises(ValueError, match="FIFO"):
        load_preset(str(tmp_path / "f.json"))
