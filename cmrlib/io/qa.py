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


# ---------------------------------------------------------------- acquisition metadata, before any method runs

ACQUISITION = dict(frame_ms=(10.0, 100.0), cycle_ms=(300.0, 2000.0), pixel_mm=(0.4, 3.5), slice_mm=(4.0, 20.0),
                   min_frames=10, min_sax_slices=6)  # a cine outside these is mis-read or not a cardiac cine


def acquisition_flags(view: str, frames: int, frame_ms: float, pixel_mm: tuple[float, float],
                      slice_mm: float | None, slices: int) -> dict[str, list[str]]:
    """What in a cine's metadata no cardiac cine shows, by what it spoils: 'frames' (too few: ED/ES frames,
    velocities, rates), 'timing' (velocities, rates) or 'space' (lengths, areas, volumes, mass)."""
    a, few, time, space = ACQUISITION, [], [], []
    if frames < a["min_frames"]:
        few.append(f"{frames} frames: fewer than the {a['min_frames']} a cardiac cycle needs")
    if not np.isfinite(frame_ms):
        time.append("no frame times in the file")
    elif not a["frame_ms"][0] <= frame_ms <= a["frame_ms"][1]:
        time.append(f"frame interval {frame_ms:.4g} ms outside {a['frame_ms'][0]:g}-{a['frame_ms'][1]:g} ms")
    elif not a["cycle_ms"][0] <= frame_ms * frames <= a["cycle_ms"][1]:
        time.append(f"cycle {frame_ms * frames:.0f} ms outside {a['cycle_ms'][0]:g}-{a['cycle_ms'][1]:g} ms")
    if not all(a["pixel_mm"][0] <= p <= a["pixel_mm"][1] for p in pixel_mm):
        space.append(f"pixel spacing {pixel_mm[0]:.3g} x {pixel_mm[1]:.3g} mm outside "
                     f"{a['pixel_mm'][0]:g}-{a['pixel_mm'][1]:g} mm")
    elif all(p == 1.0 for p in pixel_mm):
        space.append("pixel spacing exactly 1.0 mm: often a reader's default, not the scanner's")
    if view == "SAX":
        if slice_mm is not None and not a["slice_mm"][0] <= slice_mm <= a["slice_mm"][1]:
            space.append(f"slice spacing {slice_mm:.3g} mm outside {a['slice_mm'][0]:g}-{a['slice_mm'][1]:g} mm")
        if slices < a["min_sax_slices"]:
            space.append(f"{slices} SAX slices: fewer than the {a['min_sax_slices']} that cover a ventricle")
    return dict(frames=few, timing=time, space=space)


def acquisition(cine) -> dict:
    """One row of a cine's input QC: view, frames, frame interval, spacing, coverage, and its flags by kind."""
    stack = cine.is_stack
    pixel = tuple(float(s) for s in cine.spacing[-2:])
    slice_mm = float(cine.spacing[0]) if stack else None
    slices = int(cine.pixels.shape[1]) if stack else 1
    frame_ms = cine.frame_interval
    flags = acquisition_flags(cine.view, cine.n_frames, frame_ms, pixel, slice_mm, slices)
    return dict(view=cine.view, frames=cine.n_frames, frame_ms=round(frame_ms, 2),
                pixel_mm=f"{pixel[0]:.3g} x {pixel[1]:.3g}", slice_mm=slice_mm, slices=slices,
                cycle_ms=round(frame_ms * cine.n_frames, 1),
                **{f"{kind}_flags": "; ".join(why) for kind, why in flags.items()})
