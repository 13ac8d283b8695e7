"""``stemstream train`` and ``stemstream export`` (argparse subcommands).

The CLI calls ``add_parsers(subparsers)``; ``python -m stream_engine.training``
runs the same two commands without the rest of the CLI.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def _train(args) -> int:
    from .train import PRESETS, load_config, train

    if args.list_presets:
        for name, cfg in PRESETS.items():
            print(f"{name}: {cfg.get('model')} {cfg.get('model_cfg')}, {cfg.get('steps')} steps")
        return 0
    if not args.config:
        print("stemstream train: give a preset name or a config file (--list-presets shows the presets)",
              file=sys.stderr)
        return 2
    over = {"data": args.data, "valid": args.valid, "seed": args.seed, "steps": args.steps, "threads": args.threads,
            "batch": args.batch, "val_every": args.val_every, "val_tracks": args.val_tracks, "minutes": args.minutes,
            "lr": args.lr, "loss": args.loss, "init": args.init}
    if args.online_teacher and not args.teacher:
        print("stemstream train: --online-teacher needs --teacher CHECKPOINT", file=sys.stderr)
        return 2
    if args.teacher:
        over["distill"] = {"teacher": args.teacher, "weight": args.distill_weight,
                           "weight_end": args.distill_weight_end, "online": args.online_teacher}
    try:
        cfg = load_config(args.config, over)
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as e:
        print(f"stemstream train: {e}", file=sys.stderr)
        return 2
    cfg["command"] = _command_line(args)
    try:
        res = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as e:  # e.g. --init / --teacher / --resume not a checkpoint
        print(f"stemstream train: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"best_mean_sdr": res["best"], "parameters": res["parameters"], "out": res["out"]}))
    return 0


def _export(args) -> int:
    from stream_engine.separators.base import SeparatorError

    from .export import export_checkpoint

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    try:
        default_for = parse_default_for(args.default_for)
        check_export_args(formats, args.out, args.metrics)  # before any work: nothing half-written
    except ValueError as e:
        print(f"stemstream export: {e}", file=sys.stderr)
        return 2
    try:
        paths = export_checkpoint(args.checkpoint, args.out, name=args.name, formats=formats,
                                  metrics_from=args.metrics, evaluate_on=args.evaluate, command=args.command_text,
                                  window_seconds=args.window_seconds, default_for=default_for,
                                  export_command=_command_line(args))
    except (FileNotFoundError, SeparatorError, ValueError) as e:
        print(f"stemstream export: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        from stream_engine.audio_io import describe_os_error

        print(f"stemstream export: {args.out}: {describe_os_error(e)}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


EXPORT_FORMATS = ("onnx", "torchscript", "int8")


def check_export_args(formats: list[str], out: str, metrics: str | None) -> None:
    """ValueError naming the option, for what would otherwise fail after the export (or write nothing)."""
    from pathlib import Path

    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown or not formats:
        raise ValueError(f"--formats {','.join(formats)!r}: give a comma list of {', '.join(EXPORT_FORMATS)}")
    blocker = next((d for d in [Path(out), *Path(out).parents] if d.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ValueError(f"--out {out}: {blocker} is a file, not a folder")
    if metrics:
        from stream_engine.untrusted import read_json

        data = read_json(metrics, "--metrics file")
        if not isinstance(data, dict):
            raise ValueError(f"--metrics {metrics}: must hold a JSON object of metrics, not a {type(data).__name__}")


def parse_default_for(items: list[str] | None) -> dict[str, list[str]] | None:
    """``["int8=live", "onnx=balanced,quality"]`` -> {"int8": ["live"], "onnx": ["balanced", "quality"]}."""
    if not items:
        return None
    from stream_engine.profiles import PROFILES

    out: dict[str, list[str]] = {}
    for item in items:
        variant, _, profiles = item.partition("=")
        names = [p.strip() for p in profiles.split(",") if p.strip()]
        if variant not in ("onnx", "int8", "torchscript") or not names:
            raise ValueError(f"--default-for {item!r}: expected VARIANT=PROFILE[,PROFILE] with VARIANT one of "
                             "onnx, int8, torchscript")
        unknown = [n for n in names if n not in PROFILES]
        if unknown:
            raise ValueError(f"--default-for {item!r}: unknown profile {unknown[0]!r} ({', '.join(PROFILES)})")
        out[variant] = names
    return out


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a separator (teacher, student, ablation) on stems")
    p.add_argument("config", nargs="?", help="preset name (teacher, student, student-nodistill, ...) or JSON file")
    p.add_argument("--data", help="training stems: a folder of <track>/<stem>.<ext>, or musdb:ROOT[:subset]")
    p.add_argument("--valid", help="validation stems folder (fixed validation set)")
    p.add_argument("--out", default="runs/model", help="output folder (checkpoints, history, config)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--minutes", type=float, help="training-time budget: the LR schedule follows elapsed time "
                   "and training stops when it is spent (whichever of --steps / --minutes ends first)")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--lr", type=float, help="peak learning rate (cosine decay to lr_final of it)")
    p.add_argument("--loss", choices=("l1", "sdr"), help="l1: waveform + magnitude L1; sdr: negative SDR")
    p.add_argument("--init", help="start from this checkpoint's weights (fine-tuning; fresh optimizer and schedule)")
    p.add_argument("--val-every", type=int)
    p.add_argument("--val-tracks", type=int, help="validate on the first N validation tracks only")
    p.add_argument("--teacher", help="teacher checkpoint for distillation (student presets)")
    p.add_argument("--distill-weight", type=float, default=0.5, help="soft-target weight in [0, 1]")
    p.add_argument("--online-teacher", action="store_true",
                   help="the teacher separates every augmented batch (else: its cached outputs on the clean tracks)")
    p.add_argument("--distill-weight-end", type=float, help="move the weight linearly to this by the end of the run")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    p.add_argument("--list-presets", action="store_true")
    p.set_defaults(func=_train)

    lab = subparsers.add_parser("label", help="label music without stems with a teacher (distillation data)")
    lab.add_argument("sources", nargs="+", help="folders of <track>/<mixture or stems>.<ext>")
    lab.add_argument("--out", required=True, help="writes OUT/<source>/<track>/<stem>.flac (the teacher's stems) "
                                                  "and labels.json (teacher, licence); existing labels are kept")
    lab.add_argument("--model", default="spleeter", help="the teacher (default: %(default)s)")
    lab.add_argument("--teacher", default=None, metavar="MODEL",
                     help="the same as --model; htdemucs writes four stems (personal and research use only: "
                          "the labels and a student trained on them inherit that licence)")
    lab.add_argument("--profile", default="offline", help="(default: %(default)s)")
    lab.set_defaults(func=_label)

    e = subparsers.add_parser("export", help="export a checkpoint to ONNX / TorchScript / int8 ONNX with model cards")
    e.add_argument("checkpoint", help="a .pt checkpoint written by stemstream train")
    e.add_argument("--out", default=".", help="output folder")
    e.add_argument("--name", help="model name (default: from the checkpoint)")
    e.add_argument("--formats", default="onnx,torchscript,int8", help="comma list of onnx, torchscript, int8")
    e.add_argument("--metrics", help="JSON file of measured metrics to put in the card")
    e.add_argument("--evaluate", help="stems folder to measure SDR of each exported file on (e.g. mir1k/valid)")
    e.add_argument("--window-seconds", type=float, default=None, help="stateless models: quality-profile window")
    e.add_argument("--default-for", action="append", metavar="VARIANT=PROFILE[,PROFILE]",
                   help="which exported variant becomes the default of which profiles (repeatable), e.g. "
                        "--default-for int8=live --default-for onnx=balanced; default: the float ONNX")
    e.add_argument("--command-text", help="the command that reproduces the weights (stored in the card)")
    e.set_defaults(func=_export)


def _label(args) -> int:
    from .labels import cmd_label

    return cmd_label(args)


def _command_line(args) -> str:
    """The command as typed, quoted so that a shell (or shlex.split) gives back the same arguments."""
    return shlex.join(["stemstream", *(getattr(args, "_argv", None) or sys.argv[1:])])


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m stream_engine.training")
    sub = ap.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    args = ap.parse_args(argv)
    args._argv = ["train" if args.command == "train" else "export"] + argv[1:]
    return args.func(args)
