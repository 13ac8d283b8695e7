"""A loopback probe: plays click trains into a JACK graph and records what comes back.

Runs as its own process and JACK client (``--client``), so that the engine
under test and the probe are two real clients wired with ``jack_connect``:

    probe:out_N -> engine:in_M ... engine:out_K -> probe:in_J

Protocol: the probe opens its stream, prints ``ready`` and waits for a line on
stdin (the caller wires the ports meanwhile); then it plays for
``--seconds`` and records every input, saves ``--save FILE.npz`` (``played``
(frames, outputs), ``recorded`` (frames, inputs), ``latency`` as PortAudio
reports it for the probe's own stream, ``xruns``) and prints ``done``.

Output channel ``c`` (counted from 0) carries a single-sample click of
``--amplitude`` every ``--period`` frames, at offset ``--offset + c *
--stagger``, so channels can be told apart in the recording.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np


def click_train(frames: int, outputs: int, period: int, offset: int, stagger: int, amplitude: float,
                channels: list[int] | None = None) -> np.ndarray:
    played = np.zeros((frames, outputs), np.float32)
    for c in channels if channels is not None else range(outputs):
        played[offset + c * stagger :: period, c] = amplitude
    return played


def song(path: str, rate: int, outputs: int, frames: int) -> np.ndarray:
    """The first ``frames`` of an audio file as (frames, outputs) float32; its channels repeat to fill."""
    import soundfile as sf

    data, file_rate = sf.read(path, dtype="float32", always_2d=True, frames=frames)
    if file_rate != rate:
        raise SystemExit(f"--play {path}: {file_rate} Hz, the stream runs at {rate} Hz")
    return np.ascontiguousarray(data[:, np.arange(outputs) % data.shape[1]])


def delay(played: np.ndarray, recorded: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag (frames, 0..max_lag) at which ``recorded`` best matches ``played``, and the match quality.

    Quality is the correlation at that lag over the played energy (1.0: the
    recording contains the played signal, delayed, at full level).
    """
    n = len(played) + len(recorded)
    size = 1 << (n - 1).bit_length()
    spectrum = np.fft.rfft(recorded.astype(np.float64), size) * np.conj(np.fft.rfft(played.astype(np.float64), size))
    corr = np.fft.irfft(spectrum, size)[: max_lag + 1]
    lag = int(np.argmax(corr))
    energy = float(np.sum(played.astype(np.float64) ** 2))
    return lag, (float(corr[lag]) / energy if energy else 0.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--client", default="probe", help="JACK client name")
    p.add_argument("--inputs", type=int, default=2)
    p.add_argument("--outputs", type=int, default=2)
    p.add_argument("--rate", type=int, default=48000)
    p.add_argument("--block", type=int, default=256)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--period", type=int, default=24000, help="frames between clicks on one channel")
    p.add_argument("--offset", type=int, default=2400, help="first click, frames after the start")
    p.add_argument("--stagger", type=int, default=4800, help="extra offset per output channel")
    p.add_argument("--amplitude", type=float, default=0.5)
    p.add_argument("--click-channels", type=int, nargs="*", default=None,
                   help="output channels (from 1) that click; default: all")
    p.add_argument("--play", default=None, metavar="FILE",
                   help="play this audio file (at --rate, --seconds of it at most) instead of clicks")
    p.add_argument("--save", required=True, help="where to write the .npz")
    args = p.parse_args(argv)

    from stream_engine.devices import find_device, portaudio, release_portaudio, set_jack_client_name

    sd = portaudio()
    set_jack_client_name(args.client)
    device = find_device(None, "output", "jack", need=max(args.inputs, args.outputs))
    frames = int(args.seconds * args.rate)
    channels = None if args.click_channels is None else [c - 1 for c in args.click_channels]
    if args.play:
        played = song(args.play, args.rate, args.outputs, frames)
        frames = len(played)
    else:
        played = click_train(frames, args.outputs, args.period, args.offset, args.stagger, args.amplitude, channels)
    recorded = np.zeros((frames, args.inputs), np.float32)
    state = {"go": False, "pos": 0, "xruns": 0, "xruns_playing": 0}
    done = threading.Event()

    def callback(indata, outdata, n, time_info, status):
        if status:
            state["xruns"] += 1
            if state["go"] and not done.is_set():
                state["xruns_playing"] += 1  # the ones that can have damaged what was played
        if not state["go"] or done.is_set():
            outdata.fill(0)
            return
        pos = state["pos"]
        k = min(n, frames - pos)
        outdata[:k] = played[pos : pos + k]
        outdata[k:] = 0
        recorded[pos : pos + k] = indata[:k]
        state["pos"] = pos + k
        if pos + k >= frames:
            done.set()

    stream = sd.Stream(device=(device["index"], device["index"]), samplerate=args.rate, blocksize=args.block,
                       dtype="float32", channels=(args.inputs, args.outputs), callback=callback)
    with stream:
        print("ready", flush=True)
        sys.stdin.readline()
        state["go"] = True
        finished = done.wait(timeout=args.seconds * 3 + 10)
        latency = stream.latency
    release_portaudio()
    np.savez(args.save, played=played, recorded=recorded, latency=np.asarray(latency, np.float64),
             xruns=state["xruns"], xruns_playing=state["xruns_playing"], complete=finished)
    print("done" if finished else "timeout", flush=True)
    return 0 if finished else 1


@dataclass
class ProbeResult:
    played: np.ndarray
    recorded: np.ndarray
    latency: tuple[float, float]
    xruns: int
    xruns_playing: int = 0


class Probe:
    """Runs ``jack_probe`` as a subprocess; ``wire`` is called between ready and go."""

    def __init__(self, client: str = "probe", inputs: int = 2, outputs: int = 2, seconds: float = 5.0, **options):
        self.client = client
        self.inputs, self.outputs, self.seconds = inputs, outputs, seconds
        self.options = options

    def run(self, save: str, wire, env=None, timeout: float = 60.0) -> ProbeResult:
        cmd = [sys.executable, "-m", "stream_engine.tools.jack_probe", "--client", self.client,
               "--inputs", str(self.inputs), "--outputs", str(self.outputs), "--seconds", str(self.seconds),
               "--save", save]
        for key, value in self.options.items():
            flag = "--" + key.replace("_", "-")
            cmd += [flag] + ([str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)])
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        try:
            line = proc.stdout.readline().strip()
            if line != "ready":
                proc.kill()
                raise RuntimeError(f"probe did not start: {line!r} {proc.stderr.read()}")
            wire()
            time.sleep(0.2)  # let the graph settle before the first click
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"probe failed ({proc.returncode}): {out} {err}")
        data = np.load(save)
        return ProbeResult(data["played"], data["recorded"], tuple(data["latency"]), int(data["xruns"]),
                           int(data["xruns_playing"]))


if __name__ == "__main__":
    raise SystemExit(main())
