"""Signal-to-distortion ratio as in the Music Demixing Challenge."""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10(sum s^2 / sum (s - s_hat)^2) over the whole track, in dB."""
    n = min(reference.shape[-1], estimate.shape[-1])
    s = reference[..., :n].astype(np.float64)
    e = estimate[..., :n].astype(np.float64)
    return float(10.0 * np.log10((np.sum(s * s) + EPS) / (np.sum((s - e) ** 2) + EPS)))
