"""The eq. 4 volume-like target curve, cyclic frame differences and decoding a curve into ED and ES."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from ...measure import frame_diff  # noqa: F401  (this package's cyclic frame distance)


def label_curve(n: int, ed: int, es: int, delta: float = 3.0, upsilon: float = 1 / 3) -> np.ndarray:
    """The paper's eq. 4 volume-like target for a cycle of `n` frames starting at any phase (0-based ED, ES).

    Systole runs forward from ED to ES (wrapping past the last frame), diastole from ES to the next ED; each is
    normalised by its own length so the curve is 1 exactly at ED and 0 exactly at ES."""
    ed, es = int(ed) % n, int(es) % n
    if ed == es:
        raise ValueError(f"label_curve: ED and ES are the same frame ({ed})")
    sys_len = (es - ed) % n
    a = (np.arange(n) - ed) % n  # frames since ED
    sys = np.clip((sys_len - a) / sys_len, 0, 1) ** delta
    dia = np.clip((a - sys_len) / (n - sys_len), 0, 1) ** upsilon
    return np.where(a <= sys_len, sys, dia).astype(np.float32)


def decode(curve: np.ndarray, smooth: int = 1) -> tuple[int, int]:
    """ED = arg-max, ES = arg-min of a predicted cycle, after an optional circular moving average of `smooth` frames.

    The smoothing wraps around, so a peak that straddles the last and first frames is found where it is."""
    c = np.asarray(curve, dtype=np.float64)
    if smooth > 1:
        c = uniform_filter1d(c, size=int(smooth), mode="wrap")
    return int(np.argmax(c)), int(np.argmin(c))
