"""The one interface every separator implements.

A separator is called once per hop with the latest ``window`` input samples
(at its own sample rate) and returns the stems for one *output segment*: the
``hop + fade`` samples that end ``lookahead`` samples before the window's end.

    window positions:  0 ............................................. W
                       |  past context  | fade | hop ... | lookahead |
                                        ^--- segment ----^

The framer overlap-adds consecutive segments with crossfade weights that sum
to one (see ``framer.py``), so a separator never has to think about blocks,
rings or devices. Its algorithmic latency is ``lookahead + fade`` samples.

Models that do their own overlap-add internally (a streaming STFT, a
recurrent net) keep ``fade = 0`` and carry what they need in their state.

Channels: ``channels`` is 1 (mono model), 2 (stereo model) or ``None`` (any
layout, processed as given). The engine groups the stream's channels to fit
(see ``group_channels``): a mono model runs on every channel independently, a
stereo model on consecutive pairs; an odd last channel is duplicated into a
pair and the pair's mean is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import StemstreamError


class SeparatorError(StemstreamError, RuntimeError):
    """A separator cannot be built or run; the message names the model."""


@dataclass(frozen=True)
class SeparatorSpec:
    name: str
    stems: tuple[str, ...]
    window: int  # input samples per call, at ``sample_rate``
    hop: int  # new samples per call
    lookahead: int = 0  # samples after the segment the model must see
    fade: int = 0  # crossfade length between consecutive segments (<= hop)
    sample_rate: int | None = None  # None: runs at the stream's rate
    channels: int | None = None  # 1, 2 or None (any)
    stateful: bool = False
    card: dict = field(default_factory=dict, compare=False)
    # How consecutive segments are crossfaded: "sin2" (raised cosine), or "linear",
    # which is what Demucs's triangular weights amount to (htdemucs.py).
    fade_shape: str = "sin2"

    def __post_init__(self):
        if not self.stems:
            raise SeparatorError(f"{self.name}: a separator needs at least one stem")
        if not 0 <= self.fade <= self.hop:
            raise SeparatorError(f"{self.name}: fade {self.fade} must be within 0..hop ({self.hop})")
        if self.window < self.hop + self.fade + self.lookahead:
            raise SeparatorError(
                f"{self.name}: window {self.window} is shorter than hop + fade + lookahead "
                f"({self.hop} + {self.fade} + {self.lookahead})"
            )
        if self.channels not in (None, 1, 2):
            raise SeparatorError(f"{self.name}: channels must be 1, 2 or None, not {self.channels}")
        if self.fade_shape not in ("sin2", "linear"):
            raise SeparatorError(f"{self.name}: fade_shape must be 'sin2' or 'linear', not {self.fade_shape!r}")

    @property
    def segment(self) -> int:
        """Length of the output segment one call returns."""
        return self.hop + self.fade

    @property
    def latency(self) -> int:
        """Algorithmic latency in the separator's own samples."""
        return self.lookahead + self.fade


class Separator:
    """Base class. Subclasses set ``self.spec`` and implement ``separate``.

    ``separate(window)`` takes float32 ``(batch, channels, window)`` and
    returns float32 ``(batch, stems, channels, hop + fade)``. ``batch`` is the
    number of channel groups and stays fixed for one stream; stateful models
    size their state in ``reset(batch)``, which the engine calls before the
    first window and whenever the stream restarts.
    """

    spec: SeparatorSpec

    def reset(self, batch: int) -> None:
        """Forget all state; the next call starts a new stream."""

    def separate(self, window: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def segment_of(self, full: np.ndarray) -> np.ndarray:
        """Cut the output segment from an estimate covering the whole window."""
        s = self.spec
        end = s.window - s.lookahead
        return full[..., end - s.segment : end]

    def describe(self) -> str:
        s = self.spec
        rate = f"{s.sample_rate} Hz" if s.sample_rate else "stream rate"
        return (
            f"{s.name}: stems {', '.join(s.stems)}; {rate}; window {s.window}, hop {s.hop}, "
            f"fade {s.fade}, lookahead {s.lookahead}; {'stateful' if s.stateful else 'stateless'}"
        )


def group_channels(n_channels: int, model_channels: int | None) -> list[tuple[int, ...]]:
    """Which stream channels each batch entry carries (see module docstring)."""
    if model_channels is None:
        return [tuple(range(n_channels))]
    if model_channels == 1:
        return [(c,) for c in range(n_channels)]
    groups = [(c, c + 1) for c in range(0, n_channels - 1, 2)]
    if n_channels % 2:
        groups.append((n_channels - 1, n_channels - 1))
    return groups
