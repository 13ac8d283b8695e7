"""Compare separators on stem folders through the engine: one table and chart per folder.

    python3 scripts/compare_models.py --out docs/eval \
        ../shared/data/eif/valid ../shared/data/musdb-excerpts ../shared/data/mir1k/valid

Each MODEL@PROFILE in --models runs through ``stemstream eval``'s code
(``evaluate``); results go to OUT/<parent>-<folder>/results.json (merged with earlier
runs, so a new model can be added later) and a markdown table and PNG chart
beside it (``report.write_report``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stream_engine.evaluate import evaluate
from stream_engine.report import write_report
from stream_engine.separators.registry import load_separator

DEFAULT_MODELS = ["spleeter@offline", "spleeter@quality", "stemstream-teacher@quality",
                  "stemstream-student-int8@live", "dsp-center@live"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="MODEL@PROFILE (a model file path works)")
    ap.add_argument("--out", default="docs/eval")
    ap.add_argument("--rate", type=int, default=None, help="stream rate (default: each file's)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the reports from results.json")
    args = ap.parse_args()
    for folder in map(Path, args.folders):
        dest = Path(args.out) / f"{folder.resolve().parent.name}-{folder.name}"
        dest.mkdir(parents=True, exist_ok=True)
        store = dest / "results.json"
        results = json.loads(store.read_text()) if store.is_file() else {}
        for item in [] if args.report_only else args.models:
            model, _, profile = item.partition("@")
            profile = profile or "balanced"
            res = evaluate(folder, lambda rate, m=model, p=profile: load_separator(m, p, sample_rate=rate),
                           profile, stream_rate=args.rate, progress=False)
            res["model"] = Path(model).stem if model.endswith(".onnx") else model
            results[f"{res['model']}@{profile}"] = res
            print(f"{folder.name}: {item}: " + ", ".join(f"{s} {'not scored' if v is None else f'{v:.2f}'}"
                                                for s, v in res["mean"].items()), flush=True)
            store.write_text(json.dumps(results, indent=1))
        for path in [*dest.glob("*_vs_*"), *dest.glob("*-models_*")]:
            path.unlink()  # one report per folder: the newest comparison
        write_report(list(results.values()), dest)


if __name__ == "__main__":
    main()
