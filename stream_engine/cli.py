"""``stemstream``: separate, live, devices, bench, eval, models, train, export."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from .profiles import PROFILES, REALTIME_PROFILES

EXIT_ERROR = 2


def fail(message: str) -> int:
    print(f"stemstream: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def add_model_args(p: argparse.ArgumentParser, default_profile: str = "balanced", realtime_only: bool = False) -> None:
    p.add_argument("--model", default=None,
                   help="built-in name (passthrough, dsp-center), bundled model name, or a model file path; "
                        "default: the profile's default model")
    p.add_argument("--profile", choices=REALTIME_PROFILES if realtime_only else list(PROFILES), default=default_profile,
                   help="latency / quality trade-off (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (model backends only)")


def separator_factory(args):
    from .separators.registry import load_separator

    cache = {}

    def make(rate: int):
        if rate not in cache:
            cache[rate] = load_separator(args.model, args.profile, sample_rate=rate, device=args.device)
        else:
            cache[rate].reset(1)
        return cache[rate]

    return make


def cmd_separate(args) -> int:
    from .audio_io import AudioFileError
    from .demo import DEMO_SONG
    from .offline import separate_file, track_names
    from .separators.base import SeparatorError

    inputs = [Path(p) for p in args.inputs] + ([DEMO_SONG] if args.demo else [])
    if not inputs:
        return fail("give at least one input file, or --demo for the bundled demo song")
    out = Path(args.out)
    blocker = next((d for d in [out, *out.parents] if d.exists()), None)
    if blocker is not None and not blocker.is_dir():
        return fail(f"--out {out}: {blocker} is a file, not a folder")
    make = separator_factory(args)
    try:
        make(44100)  # a broken model fails here, before any file is touched
    except SeparatorError as exc:
        return fail(str(exc))
    from .params import KEY_RANGE, Params, clamp
    from .stages import build_stages, parse_fx

    try:
        fx = parse_fx(args.fx)
    except ValueError as exc:
        return fail(str(exc))
    key, clamped = clamp(args.key, *KEY_RANGE)
    if clamped:
        print(f"warning: --key {args.key} is outside {KEY_RANGE}; using {key}", file=sys.stderr)

    def stages_for(rate, channels):
        return build_stages(make(rate).spec.stems, rate, channels, fx, key_change=key != 0)

    names = track_names(inputs)
    for path, track in zip(inputs, names):
        if track != path.stem:
            print(f"note: several inputs are named {path.stem!r}: {path} -> {out / track}/", file=sys.stderr)
    failed = []
    for path, track in zip(inputs, names):
        try:
            params = Params.for_stems(make(44100).spec.stems, key=key)
            r = separate_file(path, out, make, args.profile, fmt=args.format, progress=not args.quiet, track=track,
                              params=params, stages=stages_for)
        except (AudioFileError, SeparatorError, ValueError, OSError) as exc:
            failed.append(path)
            print(f"stemstream: error: {exc}", file=sys.stderr)
            continue
        if r.nonfinite:
            print(f"warning: {path}: {r.nonfinite} NaN/inf samples were replaced by silence", file=sys.stderr)
        if r.truncated:
            promised, present = r.truncated
            print(f"warning: {path}: the file is truncated: its header promises {promised * r.seconds / present:.1f} s, "
                  f"it holds {r.seconds:.1f} s ({present} of {promised} frames); separated what is there",
                  file=sys.stderr)
        files = ", ".join(p.name for p in r.files.values())
        print(f"{r.track} ({make(44100).spec.name}, {args.profile}): {r.seconds:.1f} s in {r.elapsed:.2f} s "
              f"({r.speed:.1f}x real time) -> "
              f"{out / r.track}/ [{files}]")
        print(f"  pipeline latency: {r.latency.describe()} (removed: the stems line up with the input)")
    if failed:
        print(f"stemstream: {len(failed)} of {len(inputs)} input(s) failed: {', '.join(map(str, failed))}",
              file=sys.stderr)
    return EXIT_ERROR if failed else 0


def cmd_bench(args) -> int:
    from .bench import format_bench, run_bench
    from .separators.base import SeparatorError

    if args.soak is not None:
        from .tools.soak import format_soak, soak

        result = soak(args.soak, args.model, args.profile)
        print(json.dumps(result, indent=2, default=float) if args.json else format_soak(result))
        return 0 if result["exit_code"] == 0 else EXIT_ERROR
    try:
        result = run_bench(args.model, args.profile, args.seconds, rate=args.rate, block=args.block)
    except SeparatorError as exc:
        return fail(str(exc))
    print(json.dumps(result, indent=2, default=float) if args.json else format_bench(result))
    return 0


def cmd_eval(args) -> int:
    from .audio_io import AudioFileError
    from .evaluate import evaluate, format_results
    from .separators.base import SeparatorError

    try:
        results = evaluate(Path(args.folder), separator_factory(args), args.profile, stream_rate=args.rate,
                           progress=not args.quiet)
    except (AudioFileError, SeparatorError) as exc:
        return fail(str(exc))
    print(format_results(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.report:
        from .report import write_report

        for path in write_report(results, Path(args.report)):
            print(f"wrote {path}")
    if results["failed"]:
        return fail(f"{len(results['failed'])} track(s) could not be scored: {', '.join(results['failed'])}")
    if not results["tracks"]:
        return fail(f"{args.folder}: no track could be scored")
    return 0


def cmd_models(args) -> int:
    from .separators.registry import BUILTINS, bundled_models, default_model, third_party_models

    for name in BUILTINS:
        print(f"{name}  (built in)")
    for name, card in third_party_models().items():
        print(f"{name}  {card['sample_rate']} Hz, stems {', '.join(card['stems'])}  (weights: {card['source'].split(',')[0]})")
    for name, card in bundled_models().items():
        print(f"{name}  {card.get('sample_rate')} Hz, stems {', '.join(card.get('stems', []))}  ({card['path']})")
    for profile in PROFILES:
        print(f"default for {profile}: {default_model(profile)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stemstream", description="Separate music into stems while it plays.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("separate", help="separate files into stems (offline, same engine as live)")
    p.add_argument("inputs", nargs="*", help="audio files (wav, flac, ogg, mp3, ...)")
    p.add_argument("--demo", action="store_true", help="also separate the bundled demo song")
    p.add_argument("--out", required=True, help="output folder; writes OUT/<track>/<stem>.<format>")
    p.add_argument("--format", choices=["wav", "flac"], default="wav")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--fx", action="append", metavar="STEM=PRESET",
                   help="effect chain preset (or JSON file) on a stem; repeatable, e.g. --fx vocals=vocal")
    p.add_argument("--key", type=int, default=0, help="shift the accompaniment by semitones (-12..12)")
    add_model_args(p, "offline")
    p.set_defaults(func=cmd_separate)  # the offline profile: the best model installed, longest windows

    p = sub.add_parser("bench", help="latency, compute time, speed and misses")
    add_model_args(p, "live", realtime_only=True)
    p.add_argument("--seconds", type=float, default=10.0, help="length of the paced run")
    p.add_argument("--rate", type=int, default=48000)
    p.add_argument("--block", type=int, default=None, help="device block (default: the profile's)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--soak", type=float, default=None, metavar="MINUTES",
                   help="soak instead: `stemstream live` on a JACK dummy server for MINUTES under 100 OSC "
                        "messages a second; prints xruns, misses, compute p99/max and memory at start and end")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("eval", help="SDR over a folder of <track>/<stem>.<ext>")
    p.add_argument("folder")
    add_model_args(p)
    p.add_argument("--rate", type=int, default=None, help="run the engine at this stream rate (default: the files')")
    p.add_argument("--json", help="write the results as JSON to this file")
    p.add_argument("--report", help="write a markdown table and a PNG chart into this folder")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("models", help="list built-in and bundled separators")
    p.set_defaults(func=cmd_models)

    # Commands owned by their own modules; each imports its heavy packages lazily.
    for module in ("stream_engine.live", "stream_engine.daw_session", "stream_engine.training.commands"):
        try:
            __import__(module, fromlist=["add_parsers"]).add_parsers(sub)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so partial outputs are removed on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum, _frame):
    raise Terminated(signum)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _terminate)
    except ValueError:  # not the main thread: the caller handles signals
        pass
    try:
        return args.func(args)
    except Terminated as exc:
        print(f"stemstream: stopped by {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    raise SystemExit(main())
