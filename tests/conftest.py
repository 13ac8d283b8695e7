"""Shared fixtures: a real JACK dummy server for live tests, and test signals.

``jack_server`` starts ``jackd -d dummy -r 48000 -p 256`` under a unique
server name (8 capture and 8 playback ports) once per test session and points
this process and its children at it (``JACK_DEFAULT_SERVER``). It asks for
real-time scheduling and runs without it where the system refuses
(``server.realtime`` says which): measured on a loaded 2-core machine, the
dummy driver's own timer ran late 14 times in 10 s under ``--no-realtime``
(each one an xrun for every client, even an idle one) and 0 times in 10 s
with real time (4 to 7 times a minute while a training job kept both cores
busy).
PortAudio is re-initialised after the server is up (it enumerates JACK only
when it initialises) and terminated before the server stops.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

JACK_RATE = 48000
JACK_PERIOD = 256
JACK_PORTS = 8

# Opt-in weights a user installed (HTDemucs, personal and research use only; the bundled MIR-1K models,
# research use) must not change what the tests see, in this process or the CLIs it starts: an empty model
# folder, unless a test asks for the test-only install (the ``htdemucs_models`` fixture, test_htdemucs.py;
# ``research_models``, below).
import tempfile  # noqa: E402

os.environ["STEMSTREAM_MODELS_DIR"] = tempfile.mkdtemp(prefix="stemstream-models-")
TEST_MODELS = os.environ.get("STEMSTREAM_TEST_MODELS") or os.path.expanduser("~/.cache/stemstream-test/models")


@pytest.fixture
def htdemucs_models(monkeypatch):
    """Points the engine at the test-only HTDemucs install (scripts/test.sh makes it); skips without it."""
    from stream_engine.separators import htdemucs

    monkeypatch.setenv("STEMSTREAM_MODELS_DIR", TEST_MODELS)
    if not htdemucs.available():
        pytest.skip(f"HTDemucs is not installed in {TEST_MODELS}: scripts/test.sh installs it there for testing "
                    f"(licence: personal and research use only); or STEMSTREAM_MODELS_DIR={TEST_MODELS} "
                    f"stemstream install htdemucs --accept-licence")
    return TEST_MODELS


@pytest.fixture(scope="session")
def research_models_dir(tmp_path_factory):
    """A model folder holding the bundled research-use models (students, teacher, diffusion), installed
    through the real install path (research.install: the licence said, sha256 checked). Running this
    test suite is research use, so the licence is accepted here for testing; the folder is the
    session's own, so the user's model folder and the other tests' empty one stay as they are."""
    from stream_engine.separators import research

    folder = tmp_path_factory.mktemp("research-models")
    previous = os.environ["STEMSTREAM_MODELS_DIR"]
    os.environ["STEMSTREAM_MODELS_DIR"] = str(folder)
    try:
        for name in research.opt_in_models():
            research.install(name, accept_licence=True, log=lambda _line: None)
    finally:
        os.environ["STEMSTREAM_MODELS_DIR"] = previous
    return str(folder)


@pytest.fixture
def research_models(research_models_dir, monkeypatch):
    """Points this test (and the CLIs it starts) at the installed research-use models: the MIR-1K
    students and teacher are listed, and the int8 student is the live profile's default again."""
    monkeypatch.setenv("STEMSTREAM_MODELS_DIR", research_models_dir)
    return research_models_dir


@pytest.fixture(scope="session")
def jack_server():
    """A running JACK dummy server (``stream_engine.tools.jack.JackServer``); skips without jackd."""
    from stream_engine.tools.jack import JackError, JackServer

    if not JackServer.available():
        pytest.skip("jackd is not installed (Debian: apt-get install jackd2); CI installs it")
    server = JackServer(name=f"stemstream-test-{os.getpid()}", rate=JACK_RATE, period=JACK_PERIOD,
                        ports=JACK_PORTS, realtime=None)
    try:
        server.start()
    except JackError as exc:
        pytest.fail(f"could not start the JACK dummy server: {exc}")
    from stream_engine import devices

    try:
        devices.rescan()  # PortAudio may have been initialised (by another test) before jackd was up
    except Exception:  # noqa: BLE001 - no PortAudio: the tests using it say so themselves
        pass
    try:
        yield server
    finally:
        devices.release_portaudio()  # PortAudio's JACK client goes before the server does
        server.stop()


def tone(seconds: float, rate: int = 48000, freq: float = 440.0, channels: int = 2, amplitude: float = 0.3) -> np.ndarray:
    """(frames, channels) float32 sine; channel c is detuned by c * 3 Hz so channels differ."""
    t = np.arange(int(seconds * rate)) / rate
    cols = [amplitude * np.sin(2 * np.pi * (freq + 3.0 * c) * t) for c in range(channels)]
    return np.ascontiguousarray(np.stack(cols, axis=1), dtype=np.float32)


def stereo_music(seconds: float, rate: int = 48000, seed: int = 0) -> np.ndarray:
    """(frames, 2) float32: a centred 'voice' (vibrato tone) over wide noise and a side tone."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    voice = 0.25 * np.sin(2 * np.pi * (330 + 8 * np.sin(2 * np.pi * 5 * t)) * t)
    left = voice + 0.05 * rng.standard_normal(n) + 0.1 * np.sin(2 * np.pi * 110 * t)
    right = voice + 0.05 * rng.standard_normal(n) - 0.1 * np.sin(2 * np.pi * 110 * t)
    return np.ascontiguousarray(np.stack([left, right], axis=1), dtype=np.float32)


FOUR_STEMS = ("vocals", "drums", "bass", "other")
FOUR_STEM_GAINS = (0.8, 0.6, 0.4, 0.2)  # stem k = the input times its gain: each stem recognisable by level


def write_gain_model(folder, stems=FOUR_STEMS, gains=FOUR_STEM_GAINS, rate: int = 48000, hop: int = 256):
    """A tiny ONNX separator (onnx.helper, no training) whose stem k is ``gains[k]`` x the input.

    Stateless, stereo, window = hop, no lookahead: latency 0, so where each
    stem ends up (ports, files, meters) is exact and its level names it.
    Returns the model path (its card beside it).
    """
    import json
    from pathlib import Path

    import onnx
    from onnx import TensorProto, helper

    audio = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", 2, hop])
    out = helper.make_tensor_value_info("stems", TensorProto.FLOAT, ["batch", len(stems), 2, hop])
    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["audio", "axis"], ["audio1"]),
         helper.make_node("Mul", ["audio1", "gains"], ["stems"])],
        "gains", [audio], [out],
        initializer=[helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("gains", TensorProto.FLOAT, [1, len(stems), 1, 1], list(gains))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    path = Path(folder) / "gains-4stem.onnx"
    onnx.save(model, str(path))
    card = {"name": "gains-4stem", "format": "onnx", "sample_rate": rate, "stems": list(stems), "channels": 2,
            "window": hop, "hop": hop, "lookahead": 0, "fade": 0, "stateful": False,
            "licence": "test fixture", "training": "none: stem k = input x gain k"}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2))
    return path
