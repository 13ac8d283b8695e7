"""``stemstream daw-session``: an Ardour session with one track per stem, already wired to stemstream.

    stemstream daw-session ~/sessions/stems --route vocals=1,2 accompaniment=3,4
    stemstream live ... --route vocals=1,2 accompaniment=3,4 --daw ardour --daw-tracks vocals=1 accompaniment=2
    ardour7 ~/sessions/stems        (or: open it from Ardour's session dialog)

Each routed bus becomes an audio track of the same name (stereo for two
channels, mono for one), its inputs connected to the ``stemstream`` JACK
client's output ports for that bus (``--route vocals=1,2`` ->
``stemstream:out_0``, ``stemstream:out_1``). Ardour makes those connections
when it opens the session while ``stemstream live`` runs. Ardour's OSC surface
is switched on, so ``--daw ardour`` moves the tracks' faders; tracks are
numbered in the order given, from 1 (Ardour's strip ids).

It runs Ardour's own Lua session tool (Debian: ``ardour``) on Ardour's Dummy
backend: no JACK server is needed to make the session.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


NOT_STEMS = ("main", "instrumental", "karaoke", "mic")


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("daw-session", help="create an Ardour session with one track per stem, "
                              "inputs connected to stemstream's JACK ports")
    p.add_argument("folder", help="the new session's folder; its name is the session's name")
    p.add_argument("--route", nargs="+", action="extend", required=True, metavar="BUS=CH,CH",
                   help="the routing `stemstream live --route` uses, e.g. vocals=1,2 accompaniment=3,4")
    p.add_argument("--jack-name", default="stemstream", help="stemstream's JACK client name (default: %(default)s)")
    p.add_argument("--rate", type=int, default=48000, help="session sample rate (default: %(default)s)")
    p.set_defaults(func=cmd_daw_session)


def session_tracks(routes: list[str], jack_name: str) -> tuple[list[tuple[str, int]], dict[str, list[str]]]:
    """``["vocals=1,2"]`` -> ([("vocals", 2)], {"vocals": ["stemstream:out_0", "stemstream:out_1"]})."""
    from .mixer import parse_route

    tracks, inputs = [], {}
    for text in routes:
        bus, channels = parse_route(text)
        if bus in inputs:
            raise ValueError(f"bus {bus!r} routed twice")
        if len(channels) > 2:
            raise ValueError(f"{text!r}: a track takes one or two channels")
        tracks.append((bus, len(channels)))
        inputs[bus] = [f"{jack_name}:out_{c}" for c in channels]
    return tracks, inputs


def cmd_daw_session(args) -> int:
    from .tools.ardour import ArdourError, ArdourInstall, create_session

    try:
        tracks, inputs = session_tracks(args.route, args.jack_name)
    except ValueError as exc:
        print(f"stemstream: error: --route: {exc}", file=sys.stderr)
        return 2
    install = ArdourInstall.find()
    if install is None:
        print("stemstream: error: Ardour's Lua session tool (ardour7-lua) was not found; "
              "Debian: apt-get install --no-install-recommends ardour", file=sys.stderr)
        return 2
    folder = Path(args.folder).expanduser().resolve()
    try:
        create_session(install, folder.parent, folder.name, tracks, home=os.environ.get("HOME", str(folder.parent)),
                       rate=args.rate, inputs=inputs)
    except (ArdourError, OSError) as exc:
        print(f"stemstream: error: {exc}", file=sys.stderr)
        return 1
    # --daw-tracks takes stems only: the mixes and the mic have tracks here but no fader to mirror
    numbers = " ".join(f"{bus}={n}" for n, (bus, _) in enumerate(tracks, start=1) if bus not in NOT_STEMS)
    print(f"Ardour session {folder / (folder.name + '.ardour')}: tracks {', '.join(t for t, _ in tracks)}")
    print(f"run: stemstream live ... --route {' '.join(args.route)} --jack-name {args.jack_name} "
          f"--daw ardour --daw-tracks {numbers}")
    return 0
