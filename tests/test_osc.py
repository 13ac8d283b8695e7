"""OSC over real UDP sockets on 127.0.0.1 (no mocks)."""

import math
import socket
import threading
import time

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_packet import OscPacket

from stream_engine.osc import DawMirror, OscServer, load_daw_preset
from stream_engine.osc.daw import convert
from stream_engine.params import ParamStore, Params

STEMS = ["vocals", "accompaniment"]


def _status():
    return {"meters": {"vocals": (-6.0, -12.5), "accompaniment": (-3.0, -9.0)},
            "latency_ms": 42.5, "latency_samples": 2040,
            "stats": {"misses": 2, "xruns": 1, "cpu": 37.5}}


class Client:
    """A real OSC client: one UDP socket that sends and receives."""

    def __init__(self, server_port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = ("127.0.0.1", server_port)

    def send(self, address, *args):
        self.sock.sendto(build_msg(address, list(args)).dgram, self.server)

    def recv(self, timeout=2.0, want=None):
        """Next message (optionally the next one whose address starts with ``want``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no OSC message {want or ''} within {timeout}s")
            self.sock.settimeout(left)
            data, _ = self.sock.recvfrom(65536)
            for m in OscPacket(data).messages:
                msg: OscMessage = m.message
                if want is None or msg.address.startswith(want):
                    return msg.address, list(msg.params)

    def close(self):
        self.sock.close()


@pytest.fixture
def rig():
    from plugins.effects import EffectChain, StemEffects

    store = ParamStore(Params.for_stems(STEMS))
    effects = StemEffects(STEMS, {"vocals": EffectChain.from_preset("vocal", 48000, 2)}, 48000, 2)
    server = OscServer(store, STEMS, _status, port=0, meter_hz=30, fx_check=effects.check_fx)
    client = Client(server.port)
    yield store, server, client
    client.close()
    server.close()


def _wait(cond, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.002)
    return cond()


def test_set_and_get_round_trip(rig):
    store, server, client = rig
    client.send("/stemstream/stem/vocals/gain", 0.5)
    assert _wait(lambda: store.current.stem("vocals").gain == 0.5)
    client.send("/stemstream/stem/accompaniment/mute", 1)
    client.send("/stemstream/karaoke/guide", 0.3)
    client.send("/stemstream/karaoke/key", -3)
    client.send("/stemstream/karaoke/on", 0)
    client.send("/stemstream/mic/gain", 1.5)
    client.send("/stemstream/fx/vocals/0/threshold_db", -20.0)
    assert _wait(lambda: store.current.fx.get(("vocals", 0, "threshold_db")) == -20.0)
    p = store.current
    assert p.stem("accompaniment").mute and p.guide == pytest.approx(0.3) and p.key == -3
    assert p.karaoke is False and p.mic_gain == 1.5

    client.send("/stemstream/get/stem/vocals/gain")
    assert client.recv(want="/stemstream/stem/vocals/gain") == ("/stemstream/stem/vocals/gain", [0.5])
    client.send("/stemstream/get/karaoke/key")
    assert client.recv(want="/stemstream/karaoke/key") == ("/stemstream/karaoke/key", [-3])
    client.send("/stemstream/get/fx/vocals/0/threshold_db")
    assert client.recv(want="/stemstream/fx/") == ("/stemstream/fx/vocals/0/threshold_db", [-20.0])
    client.send("/stemstream/get/latency")
    assert client.recv(want="/stemstream/latency")[1] == [pytest.approx(42.5)]
    client.send("/stemstream/get/stats")
    addr, args = client.recv(want="/stemstream/stats")
    assert args[:2] == [2, 1] and args[2] == pytest.approx(37.5)
    # OSC patterns address several stems
    client.send("/stemstream/stem/*/solo", 1)
    assert _wait(lambda: all(store.current.stem(s).solo for s in STEMS))


def test_subscribe_receives_meters_and_param_changes(rig):
    store, server, client = rig
    client.send("/stemstream/subscribe", "127.0.0.1", client.port)
    seen = {}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not {"/stemstream/meter/vocals", "/stemstream/meter/accompaniment",
                                                 "/stemstream/latency", "/stemstream/stats"} <= seen.keys():
        addr, args = client.recv(timeout=3)
        seen.setdefault(addr, []).append(args)
    assert seen["/stemstream/meter/vocals"][0] == [pytest.approx(-6.0), pytest.approx(-12.5)]
    assert seen["/stemstream/latency"][0] == [pytest.approx(42.5)]
    # meters keep coming at about meter_hz
    t0, n = time.monotonic(), 0
    while time.monotonic() - t0 < 0.5:
        client.recv(want="/stemstream/meter/vocals")
        n += 1
    assert n >= 8  # 30 Hz nominal; generous for a loaded machine
    # a change made elsewhere (the GUI) reaches OSC subscribers
    store.update(lambda p: p.with_stem("accompaniment", gain=0.25))
    assert client.recv(want="/stemstream/stem/accompaniment/gain")[1] == [0.25]


def test_burst_of_1000_messages_loses_none(rig):
    store, server, client = rig
    assert server.rcvbuf >= 4 << 20
    applied = []
    store.subscribe(lambda old, new: applied.append(new.stem("vocals").gain))
    for i in range(1000):  # unpaced
        client.send("/stemstream/stem/vocals/gain", (i + 1) / 1000.0)
    assert _wait(lambda: len(applied) >= 1000, timeout=10), len(applied)
    assert len(applied) == 1000
    assert applied == sorted(applied) and applied[-1] == 1.0
    assert server.counters["received"] == 1000


def test_bad_types_get_error_reply(rig):
    store, server, client = rig
    before = store.current
    client.send("/stemstream/stem/vocals/gain", "loud")
    addr, args = client.recv(want="/stemstream/error")
    assert args[0] == "/stemstream/stem/vocals/gain"
    assert "/stemstream/stem/vocals/gain" in args[1] and "loud" in args[1]
    client.send("/stemstream/karaoke/key")
    addr, args = client.recv(want="/stemstream/error")
    assert "/stemstream/karaoke/key" in args[1]
    client.send("/stemstream/stem/drums/gain", 1.0)
    addr, args = client.recv(want="/stemstream/error")
    assert "drums" in args[1]
    client.send("/stemstream/nonsense", 1)
    assert "unknown address" in client.recv(want="/stemstream/error")[1][1]
    client.send("/stemstream/subscribe", "127.0.0.1", "nine")
    assert "nine" in client.recv(want="/stemstream/error")[1][1]
    client.send("/stemstream/stem/vocals/gain", float("nan"))
    assert "nan" in client.recv(want="/stemstream/error")[1][1]
    client.sock.sendto(b"\x00garbage that is not OSC", client.server)
    # the server is still alive and nothing was applied
    client.send("/stemstream/get/stem/vocals/gain")
    assert client.recv(want="/stemstream/stem/vocals/gain")[1] == [1.0]
    assert store.current.stems == before.stems


def test_out_of_range_is_clamped_applied_and_reported(rig):
    store, server, client = rig
    client.send("/stemstream/stem/vocals/gain", 5.0)
    assert client.recv(want="/stemstream/clamped") == ("/stemstream/clamped", ["/stemstream/stem/vocals/gain", 5.0, 2.0])
    assert store.current.stem("vocals").gain == 2.0
    client.send("/stemstream/karaoke/key", 30)
    assert client.recv(want="/stemstream/clamped")[1] == ["/stemstream/karaoke/key", 30.0, 12.0]
    assert store.current.key == 12
    client.send("/stemstream/karaoke/guide", -1.0)
    assert client.recv(want="/stemstream/clamped")[1][2] == 0.0
    assert store.current.guide == 0.0


def test_remote_senders_refused_unless_allowed():
    store = ParamStore(Params.for_stems(STEMS))
    with pytest.raises(ValueError):
        OscServer(store, STEMS, _status, host="0.0.0.0", port=0)
    server = OscServer(store, STEMS, _status, port=0)
    try:
        assert server._verify_request(None, ("192.168.1.20", 5000)) is False
        assert server._verify_request(None, ("127.0.0.1", 5000)) is True
        assert server.counters["refused"] == 1
    finally:
        server.close()


class FakeDaw:
    """A real UDP OSC server standing in for the DAW (it records what arrives)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.got = []
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65536)
            except (socket.timeout, OSError):
                continue
            for m in OscPacket(data).messages:
                self.got.append((m.message.address, list(m.message.params)))

    def close(self):
        self._stop.set()
        self._t.join()
        self.sock.close()


@pytest.mark.parametrize("preset,expect", [
    ("reaper", ("/track/2/volume", None)),
    ("ardour", ("/strip/gain", 2)),
    ("ableton", ("/live/track/set/volume", 2)),
])
def test_daw_mirror_reaches_a_real_udp_server(rig, preset, expect):
    store, server, client = rig
    daw = FakeDaw()
    mirror = DawMirror(store, preset, {"vocals": 2, "accompaniment": 3}, host="127.0.0.1", port=daw.port)
    try:
        # a fader move through OSC reaches the DAW, converted by the preset
        client.send("/stemstream/stem/vocals/gain", 0.5)
        address, track = expect
        want = convert(0.5, load_daw_preset(preset)["messages"][0]["value"])

        def arrived():
            return [p for a, p in daw.got if a == address and (track is None or p[0] == track)
                    and abs(p[-1] - want) < 1e-5]

        assert _wait(arrived), daw.got
        if preset == "ardour":
            assert want == pytest.approx(20 * math.log10(0.5))
        elif preset == "reaper":
            assert 0.0 < want < 0.716
        else:
            assert arrived()[-1][0] == 2 and 0.0 < want < 0.85
        store.update(lambda p: p.with_stem("accompaniment", mute=True))
        mute_addr = {"reaper": "/track/3/mute", "ardour": "/strip/mute", "ableton": "/live/track/set/mute"}[preset]
        assert _wait(lambda: any(a == mute_addr and p[-1] == 1 for a, p in daw.got))
    finally:
        mirror.close()
        daw.close()


def test_fx_parameters_validated_clamped_and_reach_the_plugin():
    import numpy as np

    from plugins.effects import EffectChain, StemEffects

    store = ParamStore(Params.for_stems(STEMS))
    stage = StemEffects(STEMS, {"vocals": EffectChain.from_preset("vocal", 48000, 2),
                                "accompaniment": EffectChain.from_preset("zam-comp", 48000, 2)}, 48000, 2)
    server = OscServer(store, STEMS, _status, port=0, meter_hz=0, fx_check=stage.check_fx)
    client = Client(server.port)
    try:
        client.send("/stemstream/fx/vocals/0/thresh", -10.0)
        addr, args = client.recv(want="/stemstream/error")
        assert "thresh" in args[1] and "threshold_db" in args[1]
        client.send("/stemstream/fx/vocals/0/ratio", 0.5)  # Pedalboard's Compressor refuses ratios below 1
        addr, args = client.recv(want="/stemstream/error")
        assert "ratio" in args[1] and "not applied" in args[1]
        assert ("vocals", 0, "ratio") not in store.current.fx
        client.send("/stemstream/fx/vocals/0/threshold_db", -30.0)
        assert _wait(lambda: ("vocals", 0, "threshold_db") in store.current.fx)
        # a VST3 parameter outside its range (ZamCompX2 attack: 0.1..100 ms) is clamped and reported
        client.send("/stemstream/fx/accompaniment/0/attack_ms", 500.0)
        addr, args = client.recv(want="/stemstream/clamped")
        assert args[0] == "/stemstream/fx/accompaniment/0/attack_ms" and args[1] == 500.0 and args[2] == 100.0
        assert store.current.fx[("accompaniment", 0, "attack_ms")] == 100.0
        stage.process(np.zeros((2, 2, 64), np.float32), store.current)  # the worker's next block
        assert stage.chains["vocals"].slots[0].plugin.threshold_db == -30.0
        assert abs(stage.chains["accompaniment"].slots[0].plugin.attack_ms - 100.0) < 1e-3
        assert stage.errors == []
    finally:
        client.close()
        server.close()


def test_live_daw_tracks_parse_and_reject():
    from stream_engine.live import LiveError, parse_daw_tracks

    stems = ["vocals", "accompaniment"]
    assert parse_daw_tracks(None, stems) == {"vocals": 1, "accompaniment": 2}
    assert parse_daw_tracks(["accompaniment=5"], stems) == {"accompaniment": 5}
    for bad in (["drums=1"], ["vocals=0"], ["vocals"]):
        with pytest.raises(LiveError, match="STEM=N"):
            parse_daw_tracks(bad, stems)
