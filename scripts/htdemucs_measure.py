"""HTDemucs through the engine: SDR, real-time factor and peak memory (issue 25's figures).

    STEMSTREAM_MODELS_DIR=... python3 scripts/htdemucs_measure.py sdr  TRACK_FOLDER... [--threads N] [--model PATH]
    STEMSTREAM_MODELS_DIR=... python3 scripts/htdemucs_measure.py file MIXTURE.wav --refs TRACK_FOLDER [--seconds S]

``sdr``: each track through ``offline.separate_array`` (the code of ``stemstream eval``), offline
profile; SDR per stem, accompaniment (every stem but the vocals, the instrumental bus), bass+other
together, the residual of the four stems' sum, RTF = wall time / audio time.

``file``: one mixture through ``offline.separate_file`` (the code of ``stemstream separate``: read
block by block, stems written as they come), in this fresh process, so the peak RSS (VmHWM) is that
run's; SDR against ``--refs`` if given. ``--seconds`` cuts the mixture first (to compare lengths).
Prints one JSON line per result.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream_engine.evaluate import base_stems, load_track  # noqa: E402
from stream_engine.metrics import sdr  # noqa: E402
from stream_engine.separators import htdemucs as h  # noqa: E402

FOUR = ("vocals", "drums", "bass", "other")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scores(refs: dict, est: dict) -> dict:
    out = {}
    for s in FOUR:
        if s in refs and s in est and np.sqrt(np.mean(refs[s] ** 2)) > 1e-4:  # a silent stem is not scored
            out[s] = round(float(sdr(refs[s], est[s])), 2)
    acc_ref = refs.get("accompaniment")
    if acc_ref is None and all(s in refs for s in FOUR[1:]):
        acc_ref = refs["drums"] + refs["bass"] + refs["other"]
    if acc_ref is not None:
        out["accompaniment"] = round(sdr(acc_ref, est["drums"] + est["bass"] + est["other"]), 2)
    if "bass" in refs and "other" in refs:
        out["bass+other"] = round(sdr(refs["bass"] + refs["other"], est["bass"] + est["other"]), 2)
    return out


def separator(args):
    return h.HTDemucsSeparator("offline", threads=args.threads, path=args.model, quiet=True)


def cmd_sdr(args) -> None:
    from stream_engine.offline import separate_array

    sep = separator(args)
    for folder in args.tracks:
        stems, rate = load_track(Path(folder))
        mix = stems["mixture"] if "mixture" in stems else sum(base_stems(stems).values())
        sep.reset(1)
        started, cpu = time.perf_counter(), time.process_time()
        est = separate_array(sep, mix, rate, "offline")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        total = sum(est[s] for s in FOUR)
        print(json.dumps({"track": Path(folder).name, "model": Path(args.model).name if args.model else "fp32",
                          "threads": args.threads, "seconds": round(mix.shape[1] / rate, 2),
                          "rtf": round(elapsed / (mix.shape[1] / rate), 3),
                          "cpu_s_per_audio_s": round(cpu / (mix.shape[1] / rate), 3), "sdr": scores(stems, est),
                          "residual_db": round(float(10 * np.log10(np.sum((total - mix) ** 2) / np.sum(mix ** 2))), 2)}),
              flush=True)


def cmd_file(args) -> None:
    import soundfile as sf

    from stream_engine.offline import separate_file

    sep = separator(args)
    refs = None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.mixture)
        if args.seconds:
            audio, rate = sf.read(path, frames=int(args.seconds * sf.info(path).samplerate), dtype="float32")
            path = Path(tmp) / f"{path.stem}-{args.seconds:g}s.wav"
            sf.write(path, audio, rate)
        rss_before = peak_rss_mb()
        cpu = time.process_time()
        result = separate_file(path, Path(tmp) / "out", lambda rate: sep, "offline", progress=False)
        cpu = time.process_time() - cpu
        row = {"file": Path(args.mixture).name, "threads": args.threads, "seconds": round(result.seconds, 1),
               "rtf": round(result.elapsed / result.seconds, 3), "cpu_s_per_audio_s": round(cpu / result.seconds, 3),
               "peak_rss_mb_before": round(rss_before),
               "peak_rss_mb": round(peak_rss_mb())}
        if args.refs:
            stems, rate = load_track(Path(args.refs))
            n = int(result.seconds * rate)
            est = {s: sf.read(result.files[s], dtype="float32")[0].T for s in FOUR}
            row["sdr"] = scores({k: v[:, :n] for k, v in stems.items()}, est)
        print(json.dumps(row), flush=True)


def cmd_single(args) -> None:
    """The conv-STFT single graph against the numpy path on one segment: parity and time per call."""
    import onnxruntime as ort

    from stream_engine.audio_io import read_audio

    path = h.install_dir() / h.SINGLE_FILE
    if not path.is_file():
        h.export_single_graph()
    audio, rate = read_audio(args.mixture)
    seg = np.ascontiguousarray(audio[:, rate * 10 : rate * 10 + h.SEGMENT], np.float32)
    sep = separator(args)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    opts.enable_cpu_mem_arena = opts.enable_mem_pattern = False
    single = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rows = []
    for k in range(2):  # interleaved A/B
        t, c = time.perf_counter(), time.process_time()
        ours = sep.separate_segment(seg)
        rows.append(("numpy", time.perf_counter() - t, time.process_time() - c))
        t, c = time.perf_counter(), time.process_time()
        one = single.run(["stems"], {"input": seg[None]})[0][0]
        rows.append(("single", time.perf_counter() - t, time.process_time() - c))
    err = float(np.abs(one - ours).max())
    rel = float(10 * np.log10(np.sum((one - ours) ** 2) / np.sum(ours ** 2)))
    print(json.dumps({"max_abs_diff": err, "diff_db": round(rel, 1), "peak_rss_mb": round(peak_rss_mb()),
                      "calls": [(n, round(w, 2), round(c, 2)) for n, w, c in rows]}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sdr")
    p.add_argument("tracks", nargs="+")
    p = sub.add_parser("file")
    p.add_argument("mixture")
    p.add_argument("--refs")
    p.add_argument("--seconds", type=float, default=None)
    p = sub.add_parser("single")
    p.add_argument("mixture")
    for p in sub.choices.values():
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--model", default=None, help="another ONNX file of the same graph (the int8 variant)")
    args = ap.parse_args()
    {"sdr": cmd_sdr, "file": cmd_file, "single": cmd_single}[args.cmd](args)


if __name__ == "__main__":
    main()
