"""Evaluation report: a markdown table and a PNG chart of SDR per track and stem.

``results``: ``{"model", "profile", "tracks": {track: {stem: sdr_db}}, "mean": {stem: db},
"median": {stem: db}}`` (what ``evaluate.evaluate`` returns; a score of None is a
stem whose reference is silence: shown as "not scored"). Several results
(a list) are compared side by side: one table column and one bar per model.
"""

from __future__ import annotations

import math
import re
from pathlib import Path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "report"


MISSING = object()  # no such stem in that track (n/a), unlike None: a silent reference (not scored)


def _fmt(v) -> str:
    if v is None:
        return "not scored"
    return "n/a" if v is MISSING or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def _stems_and_tracks(results_list: list[dict]) -> tuple[list[str], list[str]]:
    """Stem and track names over all results, in first-seen order."""
    stems = list(dict.fromkeys(s for r in results_list for s in r.get("mean", {})))
    tracks = list(dict.fromkeys(t for r in results_list for t in r.get("tracks", {})))
    return stems, tracks


def markdown(results_list: list[dict]) -> str:
    stems, tracks = _stems_and_tracks(results_list)
    cols = [(r, s) for s in stems for r in results_list]
    multi = len(results_list) > 1

    def head(r, s):
        return f"{s} ({r.get('model')}, {r.get('profile')})" if multi else s

    title = " vs ".join(f"{r.get('model')} ({r.get('profile')})" for r in results_list)
    lines = [f"# SDR: {title}", "", "SDR in dB per track: 10 log10(sum s^2 / sum (s - s_hat)^2) over the track.", "",
             "| track | " + " | ".join(head(r, s) for r, s in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for t in tracks:
        lines.append(f"| {t} | " + " | ".join(_fmt(r.get("tracks", {}).get(t, {}).get(s, MISSING)) for r, s in cols) + " |")
    for label in ("mean", "median"):
        lines.append(f"| **{label}** | " + " | ".join(f"**{_fmt(r.get(label, {}).get(s, MISSING))}**" for r, s in cols) + " |")
    for r in results_list:
        who = f" ({r.get('model')}, {r.get('profile')})" if multi else ""
        skipped, failed = r.get("skipped", {}), r.get("failed", {})
        lines += ["", f"{len(r.get('tracks', {}))} tracks scored, {len(skipped)} skipped, {len(failed)} failed{who}; "
                      "only scored tracks count in the mean and median."]
        for label, items in (("skipped", skipped), ("failed", failed)):
            lines += [f"- {label}: {t}: {reason}" for t, reason in items.items()]
    return "\n".join(lines) + "\n"


def chart(results_list: list[dict], path: Path) -> Path:
    """One panel per stem (tracks, mean and median along x), one bar and colour per model.

    Panels keep many models readable: the legend lists models, not model x stem. A model
    without a stem has no bar in its panel; a silent reference is marked "not scored"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    stems, tracks = _stems_and_tracks(results_list)
    labels = tracks + ["mean", "median"]
    colours = plt.get_cmap("tab20" if len(results_list) > 10 else "tab10")
    n = max(1, len(results_list))
    width = 0.8 / n
    fig_w = min(24.0, max(7.0, 0.22 * len(labels) * n + 4))
    fig, axes = plt.subplots(len(stems), 1, figsize=(fig_w, 2.6 * len(stems) + 1.0), sharex=True, squeeze=False)
    x = np.arange(len(labels))
    for ax, s in zip(axes[:, 0], stems):
        for i, r in enumerate(results_list):
            vals = [r.get("tracks", {}).get(t, {}).get(s, np.nan) for t in tracks]
            vals += [r.get("mean", {}).get(s, np.nan), r.get("median", {}).get(s, np.nan)]
            silent = [k for k, v in enumerate(vals) if v is None]
            vals = [np.nan if v is None else v for v in vals]
            pos = x + (i - (n - 1) / 2) * width
            ax.bar(pos, vals, width, label=f"{r.get('model')} ({r.get('profile')})", color=colours(i % colours.N))
            for k in silent:  # no bar: say why
                ax.text(pos[k], 0, "not scored", rotation=90, ha="center", va="bottom", fontsize=6, color="0.4")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_ylabel(f"{s}\nSDR (dB)")
        ax.grid(axis="y", alpha=0.3)
    ax = axes[-1, 0]
    ax.set_xticks(x)
    long_names = len(labels) > 8 or max(len(label) for label in labels) > 12
    ax.set_xticklabels(labels, rotation=90 if len(labels) > 8 else (30 if long_names else 0),
                       ha="center" if len(labels) > 8 or not long_names else "right",
                       fontsize=7 if len(labels) > 20 else 9)
    title = " vs ".join(f"{r.get('model')} ({r.get('profile')})" for r in results_list)
    axes[0, 0].set_title(title if len(results_list) <= 3 else f"SDR of {len(results_list)} models", fontsize=10)
    if len(results_list) > 1:
        axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results, out_dir) -> list[Path]:
    """Write ``<model>_<profile>.md`` and ``.png`` into ``out_dir``; returns both paths.

    ``results`` is one result dict or a list of them (compared side by side).
    """
    results_list = list(results) if isinstance(results, (list, tuple)) else [results]
    if not results_list:
        raise ValueError("write_report: no results")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = _slug("_vs_".join(f"{r.get('model')}_{r.get('profile')}" for r in results_list))
    if len(base) > 100:  # many models: file systems cap names at 255 bytes
        import hashlib

        base = f"{len(results_list)}-models_{hashlib.sha1(base.encode()).hexdigest()[:10]}"
    md = out / f"{base}.md"
    png = out / f"{base}.png"
    md.write_text(markdown(results_list) + f"\n![SDR per track]({png.name})\n")
    chart(results_list, png)
    return [md, png]
