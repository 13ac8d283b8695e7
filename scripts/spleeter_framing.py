"""SDR of the Spleeter separator against its framing (models README: "Spleeter framing").

    python3 scripts/spleeter_framing.py ../shared/data/musdb-excerpts ../shared/data/eif/valid

Runs every framing through the engine (``evaluate``) and prints one row each:
frames per window, hop, lookahead, the algorithmic latency at 48 kHz with the
quality profile's block, and mean vocals / accompaniment SDR per folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from stream_engine.evaluate import evaluate
from stream_engine.pipeline import Pipeline
from stream_engine.profiles import get_profile
from stream_engine.separators.spleeter import SpleeterSeparator

# (frames, hop_frames, fade_frames, lookahead_frames, high_band, masks); the rows of
# docs/experiments.md "Spleeter at every latency" (the quality, balanced and offline candidates)
FRAMINGS = [
    (64, 8, 4, 20, "zeros", "two-nets"),  # quality before issue 23
    (64, 16, 4, 8, "zeros", "two-nets"),  # quality now
    (64, 8, 4, 20, "zeros", "vocals-net"),
    (64, 4, 2, 3, "zeros", "two-nets"),  # balanced, hop 4
    (64, 4, 1, 3, "zeros", "two-nets"),
    (64, 8, 4, 3, "zeros", "two-nets"),  # balanced, hop 8
    (64, 2, 1, 3, "zeros", "two-nets"),  # balanced, hop 2
    (64, 4, 2, 3, "zeros", "vocals-net"),
    (512, 256, 32, 112, "zeros", "two-nets"),  # offline before issue 23
    (512, 496, 4, 8, "zeros", "two-nets"),
    (512, 480, 8, 16, "zeros", "two-nets"),
]


def main(folders: list[str]) -> None:
    print("frames  hop  lookahead  latency_ms(48k)  " + "  ".join(f"{Path(f).name}: voc / acc" for f in folders))
    for frames, hop, fade, look, high, masks in FRAMINGS:
        def make(rate, frames=frames, hop=hop, fade=fade, look=look, high=high, masks=masks):
            return SpleeterSeparator("quality", high_band=high, masks=masks, framing_override=dict(
                frames=frames, hop_frames=hop, fade_frames=fade, lookahead_frames=look))
        latency = Pipeline(make(48000), 48000, 2, get_profile("quality")).latency().algorithmic_ms
        cells = []
        for folder in folders:
            r = evaluate(Path(folder), make, "quality", progress=False)
            cells.append(f"{r['mean']['vocals']:6.2f} / {r['mean']['accompaniment']:6.2f}")
        print(f"{frames:6d} {hop:4d} {look:10d} {latency:16.0f}  {high:5s} {masks:10s} " + "  ".join(cells),
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
