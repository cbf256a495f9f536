"""Deterministic intensity maps: normalisation, a coil bias field, coarser resolution, per-label contrast
remaps and a thicker wall (each driven by a random augmentation in `augment`, or used as is)."""
from __future__ import annotations

import cv2
import numpy as np

from ..labels import LV, MYO


def clip_zscore(x: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    """Clip to the [lo, hi] percentiles then z-score, so scanners with different gains look alike."""
    x = np.asarray(x, dtype=np.float32)
    a, b = np.percentile(x, [lo, hi])
    x = np.clip(x, a, b)
    return ((x - x.mean()) / max(float(x.std()), 1e-6)).astype(np.float32)


def median_iqr(x: np.ndarray) -> np.ndarray:
    """Centre on the median and divide by the inter-quartile range (MVnet's robust scaling)."""
    x = np.asarray(x, dtype=np.float32)
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return ((x - med) / max(float(q3 - q1), 1e-6)).astype(np.float32)


def percentile_range(x: np.ndarray, lo: float = 1.0, hi: float = 99.0) -> np.ndarray:
    """Scale so the `lo` / `hi` percentiles map to 0 / 1 (not clipped): images compared by eye or by a probe."""
    a, b = np.percentile(x, [lo, hi])
    return ((x - a) / max(b - a, 1e-6)).astype(np.float32)


NORMS = {"zscore": clip_zscore, "iqr": median_iqr, "range": percentile_range}


def normalise(x: np.ndarray, method: str = "zscore") -> np.ndarray:
    """Normalise intensities with a named method ('zscore' = percentile clip + z-score, 'iqr' = median / IQR,
    'range' = 1st-99th percentile to 0-1)."""
    if method not in NORMS:
        raise ValueError(f"unknown normalisation {method!r}; expected one of {sorted(NORMS)}")
    return NORMS[method](x)


def bias_field(shape: tuple[int, int], coeffs: np.ndarray) -> np.ndarray:
    """A smooth multiplicative field exp(sum c[i, j] y^i x^j) on [-1, 1]^2: a coil's slow intensity drift."""
    c = np.asarray(coeffs, dtype=np.float32)
    y, x = np.linspace(-1, 1, shape[0], dtype=np.float32), np.linspace(-1, 1, shape[1], dtype=np.float32)
    py, px = np.stack([y ** i for i in range(c.shape[0])]), np.stack([x ** j for j in range(c.shape[1])])
    return np.exp(py.T @ c @ px).astype(np.float32)


def degrade(img: np.ndarray, factor: float) -> np.ndarray:
    """Down-sample (area) by `factor` >= 1 and back (bilinear): the look of a coarser acquisition on the same grid."""
    a = np.asarray(img, dtype=np.float32)
    if factor <= 1.0:
        return a
    h, w = a.shape[-2:]
    small = (max(1, int(round(w / factor))), max(1, int(round(h / factor))))
    flat = a.reshape(-1, h, w)
    out = [cv2.resize(cv2.resize(c, small, interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)
           for c in flat]
    return np.stack(out).reshape(a.shape)


def remap_labels(img: np.ndarray, mask: np.ndarray, gain: np.ndarray, shift: np.ndarray,
                 sigma: float = 1.0) -> np.ndarray:
    """Per-label linear intensity remap (label k: gain[k] about the region's mean, plus shift[k]), blended over
    `sigma` px at the borders: SynthSeg-style contrast randomisation that keeps each region's own texture."""
    x = np.asarray(img, dtype=np.float32)
    m = np.asarray(mask)
    out, wsum = np.zeros_like(x), np.zeros_like(x)
    for k in np.unique(m):
        w = (m == k).astype(np.float32)
        mean = float(x[m == k].mean())
        if sigma > 0:
            w = cv2.GaussianBlur(w, (0, 0), sigma)
        out += w * (gain[k] * (x - mean) + mean + shift[k])
        wsum += w
    return (out / np.maximum(wsum, 1e-6)).astype(np.float32)


def _texture(img: np.ndarray, region: np.ndarray, sigma: float = 2.0, clip: float = 2.0) -> np.ndarray:
    """The fine texture of `region`: the image minus its within-region Gaussian mean, clipped to `clip` robust SDs
    so that partial-volume edges do not come along."""
    r = region.astype(np.float32)
    t = img - cv2.GaussianBlur(img * r, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(r, (0, 0), sigma), 1e-6)
    sd = 1.4826 * float(np.median(np.abs(t[region]))) if region.any() else 0.0
    return np.clip(t, -clip * sd, clip * sd)


def thicken_wall(img: np.ndarray, mask: np.ndarray, frac: float, inner: int = LV, outer: int = MYO,
                 sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Turn the rim of label `inner` within `frac` x its inscribed radius of label `outer` into `outer`, image and
    mask alike (the rim takes `outer`'s median intensity plus its own fine texture, blended over `sigma` px): a
    thicker wall around a smaller cavity, as in end-systolic and hypertrophied hearts, which a phantom renders too
    rarely."""
    x, m = np.asarray(img, dtype=np.float32), np.asarray(mask)
    lv, myo = m == inner, m == outer
    if frac <= 0 or not lv.any() or not myo.any():
        return x, m
    to_myo = cv2.distanceTransform((~myo).astype(np.uint8), cv2.DIST_L2, 5)  # px to the nearest `outer` pixel
    radius = cv2.distanceTransform(lv.astype(np.uint8), cv2.DIST_L2, 5).max()  # the cavity's inscribed radius
    rim = lv & (to_myo <= frac * radius)
    if not rim.any():
        return x, m
    w = cv2.GaussianBlur(rim.astype(np.float32), (0, 0), sigma) if sigma > 0 else rim.astype(np.float32)
    w = np.where(lv, np.maximum(w, rim), 0.0).astype(np.float32)
    flat = x.reshape(-1, *m.shape)  # the rim keeps the cavity's fine texture (noise) on the wall's median level
    out = np.stack([c * (1 - w) + w * (np.median(c[myo]) + _texture(c, lv)) for c in flat])
    return out.reshape(x.shape).astype(np.float32), np.where(rim, outer, m).astype(m.dtype)
