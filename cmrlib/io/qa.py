"""Anatomy check on canonical SAX masks, so a flipped label convention fails loudly instead of corrupting volumes.

On mid-ventricular slices (LV area >= 30 % of its largest): the LV blood pool is ringed by myocardium, the RV
lies outside the myocardial ring (not in the filled ring) and beside it (touching the septum).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..labels import LV, MYO, RV

LIMITS = dict(lv_ringed=0.8, rv_inside=0.05, rv_touch=0.02)  # thresholds, calibrated on all 100 ACDC patients


def _ring(mask: np.ndarray) -> np.ndarray:
    """The 1-pixel outer border of a region (4-connected)."""
    return ndimage.binary_dilation(mask) & ~mask


def anatomy_scores(labels: np.ndarray) -> dict:
    """Median over mid-ventricular slices of: LV border on MYO, RV inside the filled MYO ring, RV border on MYO."""
    lab = np.asarray(labels)
    lab = lab[None] if lab.ndim == 2 else lab
    lv_area = (lab == LV).sum(axis=(1, 2))
    if lv_area.max() == 0:
        return dict(lv_ringed=np.nan, rv_inside=np.nan, rv_touch=np.nan, n_slices=0)
    rows = []
    for z in np.flatnonzero(lv_area >= 0.3 * lv_area.max()):
        s = lab[z]
        lv, myo, rv = s == LV, s == MYO, s == RV
        ring = _ring(lv)
        filled = ndimage.binary_fill_holes(lv | myo)
        rv_ring = _ring(rv)
        rows.append((myo[ring].mean() if ring.any() else np.nan,
                     (rv & filled).sum() / rv.sum() if rv.any() else np.nan,
                     myo[rv_ring].mean() if rv.any() else np.nan))
    med = np.nanmedian(np.array(rows, dtype=float), axis=0) if rows else [np.nan] * 3
    return dict(lv_ringed=float(med[0]), rv_inside=float(med[1]), rv_touch=float(med[2]), n_slices=len(rows))


def anatomy_ok(labels: np.ndarray, limits: dict = LIMITS) -> tuple[bool, dict]:
    """(passes, scores): LV ringed by MYO, RV outside the ring and touching it (NaN scores are not failures)."""
    sc = anatomy_scores(labels)
    fails = [sc["lv_ringed"] < limits["lv_ringed"], sc["rv_inside"] > limits["rv_inside"],
             sc["rv_touch"] < limits["rv_touch"]]
    return not any(fails), sc
