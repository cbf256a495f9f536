"""The eq. 4 volume-like target curve, cyclic frame differences and decoding a curve into ED and ES."""
from __future__ import annotations

from functools import lru_cache

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


DECODERS = ("argmax", "template", "hybrid")  # how a predicted curve becomes ED and ES: its extremes, the closest
                                            # eq. 4 curve, or ED from that curve and ES from the minimum


@lru_cache(maxsize=64)
def _templates(n: int, delta: float, upsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """Every (ED, ES) pair of an n-frame cycle and its eq. 4 curve, centred: (P, 2) pairs and (P, n) curves."""
    pairs = np.array([(ed, es) for ed in range(n) for es in range(n) if ed != es])
    t = np.stack([label_curve(n, ed, es, delta, upsilon) for ed, es in pairs]).astype(np.float64)
    return pairs, t - t.mean(1, keepdims=True)


def fit_template(curve: np.ndarray, delta: float = 3.0, upsilon: float = 1 / 3) -> tuple[int, int]:
    """ED and ES of the eq. 4 curve that fits a predicted one best (least squares, any positive scale and offset):
    every frame votes, where an argmax hears only the peak, and the target's flat diastolic top (0.02 below its
    peak one frame before ED) is where an argmax lands early on noise."""
    c = np.asarray(curve, dtype=np.float64)
    if len(c) < 3:
        return decode(c)
    pairs, t = _templates(len(c), float(delta), float(upsilon))
    cov = t @ (c - c.mean())
    fit = np.where(cov > 0, cov ** 2 / (t ** 2).sum(1), -np.inf)  # the variance each template explains
    ed, es = pairs[int(np.argmax(fit))]
    return int(ed), int(es)


def read_frames(curve: np.ndarray, smooth: int = 1, decoder: str = "argmax", delta: float = 3.0,
                upsilon: float = 1 / 3) -> tuple[int, int]:
    """ED and ES from a predicted curve by `decoder` (one of DECODERS). 'hybrid' keeps each decoder where it reads
    best: ED from the template (the flat diastolic top misleads an argmax), ES from the minimum (a sharp trough)."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; one of {DECODERS}")
    if decoder == "argmax":
        return decode(curve, smooth)
    ed, es = fit_template(curve, delta, upsilon)
    return (ed, decode(curve, smooth)[1]) if decoder == "hybrid" else (ed, es)
