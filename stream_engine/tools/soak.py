"""Soak benchmark: ``stemstream live`` on a JACK dummy server under OSC load, for minutes.

    python -m stream_engine.tools.soak --minutes 30          (or: stemstream bench --soak 30)

Starts a private ``jackd -d dummy`` (48 kHz, period 256), runs ``stemstream
live --input jack --output jack`` with the default model (live profile) in
a child process, and while it plays an OSC client sends 100 messages a
second (faders, mutes, the karaoke guide, gets) and subscribes to the
feedback. At the end it prints xruns (the engine's and jackd's), deadline
misses, windows of NaN/inf model output, the compute time per call (p99,
max), the OSC traffic, and the child's resident memory shortly after start
and at the end. A benchmark that prints figures, not a test: the figures
depend on the machine (targets on a quiet one: 0 xruns, 0 misses, < 5 MB
growth in 30 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class OscLoad:
    """Sends ``rate`` messages a second to the engine and counts the feedback it gets back."""

    def __init__(self, port: int, rate: float = 100.0, stems=("vocals", "accompaniment")):
        from pythonosc.osc_message_builder import build_msg

        self._build = build_msg
        self.dest = ("127.0.0.1", port)
        self.rate = rate
        self.stems = stems
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.sent = self.received = self.errors = 0
        self.lateness_max_ms = 0.0
        self.started = self.stopped = 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send_loop, daemon=True),
                         threading.Thread(target=self._recv_loop, daemon=True)]

    def _message(self, k: int) -> bytes:
        stem = self.stems[k % len(self.stems)]
        phase = (k % 200) / 200.0
        kind = k % 10
        if kind < 6:
            return self._build(f"/stemstream/stem/{stem}/gain", [0.5 + phase]).dgram
        if kind == 6:
            return self._build("/stemstream/karaoke/guide", [phase]).dgram
        if kind == 7:
            return self._build(f"/stemstream/stem/{stem}/mute", [0]).dgram
        if kind == 8:
            return self._build("/stemstream/get/stats", []).dgram
        return self._build(f"/stemstream/get/meter/{stem}", []).dgram

    def _send_loop(self) -> None:
        self.sock.sendto(self._build("/stemstream/subscribe", ["127.0.0.1", self.sock.getsockname()[1]]).dgram,
                         self.dest)
        period = 1.0 / self.rate
        nxt = time.monotonic()
        k = 0
        while not self._stop.is_set():
            nxt += period
            self.sock.sendto(self._message(k), self.dest)
            self.sent += 1
            k += 1
            delay = nxt - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                self.lateness_max_ms = max(self.lateness_max_ms, -delay * 1e3)

    def _recv_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, OSError):
                continue
            self.received += 1
            if data.startswith(b"/stemstream/error"):
                self.errors += 1

    def start(self) -> None:
        self.started = time.monotonic()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self.stopped = time.monotonic()
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.sock.close()


def soak(minutes: float, model: str | None = None, profile: str = "live", osc_rate: float = 100.0,
         rss_after: float = 10.0, quiet: bool = False) -> dict:
    from .jack import JackServer

    seconds = minutes * 60.0
    server = JackServer(rate=48000, period=256, ports=8, realtime=None).start()
    stats_file = Path(tempfile.mkstemp(prefix="soak-", suffix=".json")[1])
    cmd = [sys.executable, "-m", "stream_engine.cli", "live", "--input", "jack", "--output", "jack",
           "--profile", profile, "--duration", f"{seconds + rss_after:.1f}", "--osc-port", "0", "--quiet",
           "--jack-name", "stemstream-soak", "--stats-json", str(stats_file)]
    if model:
        cmd += ["--model", model]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env)
    lines: list[str] = []
    port_found = threading.Event()
    port = [0]

    def read_stdout():
        for line in child.stdout:
            lines.append(line.rstrip())
            m = re.search(r"OSC on 127\.0\.0\.1:(\d+)", line)
            if m:
                port[0] = int(m.group(1))
                port_found.set()

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    load = None
    samples = []
    try:
        if not port_found.wait(120):
            raise RuntimeError(f"stemstream live did not start: {child.stderr.read() if child.poll() is not None else ''}")
        from ..separators.registry import model_stems

        load = OscLoad(port[0], osc_rate, stems=model_stems(model, profile))  # the faders this model has
        load.start()
        started = time.monotonic()
        time.sleep(rss_after)  # the model, PortAudio and the JACK client are warm by now
        rss_start = rss_mb(child.pid)
        samples.append((0.0, rss_start))
        next_report = time.monotonic() + 60
        while child.poll() is None and time.monotonic() - started < seconds + rss_after - 2.0:
            time.sleep(0.5)
            if time.monotonic() >= next_report:
                samples.append((time.monotonic() - started - rss_after, rss_mb(child.pid)))
                next_report += 60
                if not quiet:
                    print(f"  {samples[-1][0] / 60:5.1f} min: RSS {samples[-1][1]:.1f} MB, OSC sent {load.sent}, "
                          f"feedback {load.received}", file=sys.stderr, flush=True)
        rss_end = rss_mb(child.pid)
        samples.append((time.monotonic() - started - rss_after, rss_end))
        load.stop()
        _, err = child.communicate(timeout=60)
        reader.join(timeout=5)
        stats = json.loads(stats_file.read_text()) if stats_file.stat().st_size else {}
    finally:
        if load is not None and not load._stop.is_set():
            load.stop()
        if child.poll() is None:
            child.terminate()
            child.wait(timeout=30)
        jack = server.xrun_counts()
        realtime = server.realtime
        server.stop()
        stats_file.unlink(missing_ok=True)
    compute = stats.get("compute_ms", {})
    return {
        "minutes": minutes, "model": stats.get("model"), "profile": profile, "exit_code": child.returncode,
        "stderr_tail": err.strip().splitlines()[-3:] if err.strip() else [],
        "jackd_realtime": realtime, "callbacks": stats.get("callbacks"), "xruns": stats.get("xruns"),
        "jackd_xruns": jack, "misses": stats.get("misses"), "nonfinite_windows": stats.get("nonfinite_windows"),
        "dropped_frames": stats.get("dropped_frames"), "cpu_percent": stats.get("cpu_percent"),
        "compute_p99_ms": compute.get("p99"), "compute_max_ms": compute.get("max"),
        "callback_max_ms": (stats.get("callback_ms") or {}).get("max"),
        "latency_ms": (stats.get("latency") or {}).get("total_ms"),
        "osc_sent": load.sent if load else 0,
        "osc_rate": load.sent / max(load.stopped - load.started, 1e-9) if load else 0.0, "osc_feedback_received": load.received if load else 0,
        "osc_errors": load.errors if load else 0, "osc_sender_late_max_ms": load.lateness_max_ms if load else 0.0,
        "rss_start_mb": rss_start, "rss_end_mb": rss_end,
        "rss_growth_mb": None if rss_start is None or rss_end is None else rss_end - rss_start,
        "rss_samples": [(round(t, 1), m) for t, m in samples],
    }


def format_soak(r: dict) -> str:
    f = lambda v, d=3: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    return "\n".join([
        f"soak: {r['minutes']:g} min of stemstream live ({r['model']}, {r['profile']}) on a JACK dummy server "
        f"(48 kHz, period 256, jackd real-time: {r['jackd_realtime']}), OSC {r['osc_sent']} messages sent "
        f"({r['osc_rate']:.0f}/s), {r['osc_feedback_received']} feedback "
        f"messages received, {r['osc_errors']} error replies",
        f"  xruns {r['xruns']} (jackd: server late {r['jackd_xruns']['server_late']}, clients late "
        f"{r['jackd_xruns']['client_late']}), misses {r['misses']}, NaN/inf windows {r['nonfinite_windows']}, "
        f"dropped frames {r['dropped_frames']}, callbacks {r['callbacks']}",
        f"  compute per call: p99 {f(r['compute_p99_ms'])} ms, max {f(r['compute_max_ms'])} ms; callback max "
        f"{f(r['callback_max_ms'])} ms; worker cpu {f(r['cpu_percent'], 1)}%; latency {f(r['latency_ms'], 1)} ms",
        f"  memory (RSS): {f(r['rss_start_mb'], 1)} MB at start, {f(r['rss_end_mb'], 1)} MB at the end "
        f"(growth {f(r['rss_growth_mb'], 2)} MB)",
        f"  exit code {r['exit_code']}" + (f": {' | '.join(r['stderr_tail'])}" if r["exit_code"] else ""),
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stream_engine.tools.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--model", default=None, help="default: the live profile's default model")
    ap.add_argument("--profile", default="live")
    ap.add_argument("--osc-rate", type=float, default=100.0, help="OSC messages a second")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    r = soak(args.minutes, args.model, args.profile, args.osc_rate)
    print(format_soak(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0 if r["exit_code"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
