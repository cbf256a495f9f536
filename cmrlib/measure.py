"""Cardiac measurements from canonical label maps and valve landmarks (CUSSP Table 1, MVnet MAPSE/s'/e'/a').

Units: lengths mm, areas mm^2, volumes mL, mass g, velocity cm/s, time ms, cardiac output L/min, BSA m^2.
Masks use the canonical labels of `cmrlib.labels`; spacing is (sy, sx) for 2D frames, (sz, sy, sx) for SAX stacks
(sz = slice spacing, i.e. distance between slice centres, gap included). Points are (x, y) = (column, row) pixels.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import signal

from .labels import LA, LV, MYO, RA, RV
from .record import Cine
from .store import CohortStore

__all__ = ["subject_measures", "measure_pairs", "MODEL_KEYS", "MeasureError", "UNITS", "simpson_volume", "volume_curve", "area_curve", "ed_es_from_curve", "frame_diff", "ejection",
           "lv_mass", "cardiac_output", "bsa_mosteller", "index_bsa", "chamber_area", "chamber_length",
           "area_length_biplane", "area_length_single", "sax_measures", "la_measures", "ra_measures", "table1",
           "valve_hinges", "valve_track", "mv_displacement", "average_views", "mapse", "mv_velocity", "velocity_peaks", "valve_measures", "mv_measures"]

MYO_DENSITY = 1.05  # g/mL
Label = int | Sequence[int]

# unit of every key the measure functions return ('i' suffix = indexed to BSA)
UNITS = {"BSA": "m²", "HR": "bpm", "LVEDV": "mL", "LVESV": "mL", "LVSV": "mL", "LVEF": "%", "LVM": "g", "LVCO": "L/min",
         "RVEDV": "mL", "RVESV": "mL", "RVSV": "mL", "RVEF": "%", "LAVmax": "mL", "LAVmin": "mL", "LASV": "mL",
         "LAEF": "%", "RAVmax": "mL", "RAVmin": "mL", "RASV": "mL", "RAEF": "%", "MAPSE": "mm", "s_prime": "cm/s",
         "e_prime": "cm/s", "a_prime": "cm/s"}
UNITS.update({f"{k}i": f"{u}/m²" for k, u in list(UNITS.items()) if u in ("mL", "g", "L/min")})
SAX_VOLUMES = ("LVEDV", "LVESV", "LVSV", "LVEF", "LVM", "RVEDV", "RVESV", "RVSV", "RVEF")  # a SAX stack's measures
# with a real reference: what the segmenter's 90 % intervals calibrate and what `cmrlib validate` compares
ES_OVERSHOOT_ML = "lv_es_overshoot_ml"  # a measures table's column: the LV at ES beyond its ED area (`es_overshoot`)
EDES_ENTROPY = "edes_entropy_"  # a measures table's column prefix: the segmenter's mean entropy inside a structure
# at the ED and ES frames it measured (what an interval in the 'entropy' scale is a multiple of)


def entropy_structure(measure: str) -> str:
    """The structure whose segmentation entropy an interval of a SAX measure is a multiple of: the myocardium for
    LV mass, else the ventricle it measures."""
    return "MYO" if measure == "LVM" else measure[:2]


def spread_columns(table: pd.DataFrame, measures) -> dict[str, str]:
    """measure -> its structure's ED/ES entropy column (`EDES_ENTROPY`), for the measures whose column the table
    has."""
    return {m: f"{EDES_ENTROPY}{entropy_structure(m)}" for m in measures
            if f"{EDES_ENTROPY}{entropy_structure(m)}" in table.columns}


INDEXED = ("LVEDV", "LVESV", "LVSV", "LVM", "LVCO", "RVEDV", "RVESV", "RVSV", "LAVmax", "LAVmin", "LASV", "RAVmax",
           "RAVmin", "RASV")


class MeasureError(ValueError):
    """A measurement's inputs are inconsistent (shape vs spacing, empty chamber, bad indices)."""


def _is(mask: np.ndarray, label: Label) -> np.ndarray:
    """Boolean mask of one label or any of a tuple of labels."""
    return np.isin(np.asarray(mask), np.atleast_1d(np.asarray(label)))


def _check_spacing(arr: np.ndarray, spacing: Sequence[float], nd: int, what: str) -> np.ndarray:
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (nd,) or (sp <= 0).any():
        raise MeasureError(f"{what}: spacing must be {nd} positive numbers, got {tuple(spacing)}")
    return sp


# ---------------------------------------------------------------- volumes and global function


def simpson_volume(mask: np.ndarray, spacing: Sequence[float], label: Label) -> float:
    """Volume in mL by slice summation (Simpson's rule): voxel count x sy x sx x slice spacing; mask (Z,H,W)."""
    m = np.asarray(mask)
    if m.ndim != 3:
        raise MeasureError(f"simpson_volume: mask must be (Z,H,W), got shape {m.shape}")
    sp = _check_spacing(m, spacing, 3, "simpson_volume")
    return float(_is(m, label).sum() * sp.prod() / 1000.0)


def es_overshoot(ed: np.ndarray, es: np.ndarray, spacing: Sequence[float], label: Label = LV) -> float:
    """The chamber's volume at ES beyond its ED area slice by slice, in mL (ED and ES masks (Z,H,W)): a cavity
    contracts, so a segmentation whose ES cavity outgrows its ED one on a slice has failed there."""
    a, b = np.asarray(ed), np.asarray(es)
    if a.shape != b.shape or a.ndim != 3:
        raise MeasureError(f"es_overshoot: ED and ES masks must be one (Z,H,W) shape, got {a.shape} and {b.shape}")
    sp = _check_spacing(a, spacing, 3, "es_overshoot")
    grown = _is(b, label).sum(axis=(1, 2)) - _is(a, label).sum(axis=(1, 2))
    return float(np.clip(grown, 0, None).sum() * sp.prod() / 1000.0)


def area_curve(labels: np.ndarray, spacing: Sequence[float], label: Label) -> np.ndarray:
    """(T,) chamber area in mm^2 per frame of (T,H,W) long-axis label maps."""
    m = np.asarray(labels)
    if m.ndim != 3:
        raise MeasureError(f"area_curve: labels must be (T,H,W), got shape {m.shape}")
    sp = _check_spacing(m, spacing, 2, "area_curve")
    return _is(m, label).sum(axis=(1, 2)) * sp.prod()


def volume_curve(labels: np.ndarray, spacing: Sequence[float], label: Label) -> np.ndarray:
    """(T,) volume in mL per frame of (T,Z,H,W) SAX label stacks; (T,H,W) frames give the area curve in mm^2."""
    m = np.asarray(labels)
    if m.ndim == 3:
        return area_curve(m, spacing, label)
    if m.ndim != 4:
        raise MeasureError(f"volume_curve: labels must be (T,Z,H,W) or (T,H,W), got shape {m.shape}")
    sp = _check_spacing(m, spacing, 3, "volume_curve")
    return _is(m, label).sum(axis=(1, 2, 3)) * sp.prod() / 1000.0


def frame_diff(pred, true, n) -> np.ndarray:
    """Cyclic frame distance |pred - true| on a cycle of n frames (frame 0 and frame n-1 are neighbours); n = 0
    (the cycle unknown): the plain distance."""
    d, n = np.abs(np.asarray(pred) - np.asarray(true)), np.asarray(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = d % np.where(n > 0, n, 1)
    return np.where(n > 0, np.minimum(c, n - c), d)


def ed_es_from_curve(curve, tol: float = 0.0) -> tuple[int, int]:
    """(ED, ES) frame indices as the max and min of a volume (or area) curve.

    With `tol` > 0 (a fraction of the curve's range) frames that tie within it form a plateau, and the label
    is the physiological one rather than an arbitrary tie-break: ED = the last frame of the maximum plateau
    (just before contraction), ES = the first frame of the minimum plateau (valve closure). Cyclic.
    """
    c = np.asarray(curve, dtype=float)
    if c.ndim != 1 or c.size == 0 or not np.isfinite(c).any():
        raise MeasureError(f"ed_es_from_curve: need a non-empty 1-D curve, got shape {c.shape}")
    ed, es = int(np.nanargmax(c)), int(np.nanargmin(c))
    band = tol * (np.nanmax(c) - np.nanmin(c))
    if band <= 0:
        return ed, es
    return _plateau_edge(c >= c[ed] - band, ed, +1), _plateau_edge(c <= c[es] + band, es, -1)


def _plateau_edge(inside: np.ndarray, start: int, step: int) -> int:
    """Walk cyclically from `start` in direction `step` while frames stay inside the plateau; return the edge."""
    n, k = len(inside), start
    for _ in range(n - 1):
        if not inside[(k + step) % n]:
            break
        k = (k + step) % n
    return k


def ejection(edv, esv) -> dict:
    """Stroke volume (mL) and ejection fraction (%) from end-diastolic and end-systolic volumes."""
    edv, esv = np.asarray(edv, dtype=float), np.asarray(esv, dtype=float)
    sv = edv - esv
    with np.errstate(invalid="ignore", divide="ignore"):
        ef = np.where(edv > 0, 100.0 * sv / np.where(edv > 0, edv, 1.0), np.nan)
    return dict(sv=_scalar(sv), ef=_scalar(ef))


def _scalar(x):
    """0-d arrays to float, arrays pass through."""
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


def lv_mass(myo_volume_ml):
    """LV mass in g: myocardial volume x 1.05 g/mL."""
    return _scalar(np.asarray(myo_volume_ml, dtype=float) * MYO_DENSITY)


def cardiac_output(sv_ml, hr_bpm):
    """Cardiac output in L/min from stroke volume (mL) and heart rate (beats/min)."""
    return _scalar(np.asarray(sv_ml, dtype=float) * np.asarray(hr_bpm, dtype=float) / 1000.0)


def bsa_mosteller(height_cm, weight_kg):
    """Body surface area in m^2 (Mosteller): sqrt(height_cm x weight_kg / 3600)."""
    return _scalar(np.sqrt(np.asarray(height_cm, dtype=float) * np.asarray(weight_kg, dtype=float) / 3600.0))


def index_bsa(value, bsa):
    """A measure indexed to body surface area (value / BSA); NaN when BSA is missing or not positive."""
    b = np.asarray(bsa, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scalar(np.where(b > 0, np.asarray(value, dtype=float) / np.where(b > 0, b, 1.0), np.nan))


# ---------------------------------------------------------------- area-length (long axis)


def chamber_area(mask2d: np.ndarray, spacing: Sequence[float], label: Label) -> float:
    """Chamber area in mm^2 on one 2D frame: pixel count x sy x sx."""
    m = np.asarray(mask2d)
    if m.ndim != 2:
        raise MeasureError(f"chamber_area: mask must be (H,W), got shape {m.shape}")
    return float(_is(m, label).sum() * _check_spacing(m, spacing, 2, "chamber_area").prod())


def chamber_length(mask2d: np.ndarray, spacing: Sequence[float], label: Label, base_points=None) -> float:
    """Long-axis length in mm of a chamber on one 2D frame.

    With base_points ((2,2) (x,y) pixels, e.g. the mitral/tricuspid annulus points): distance from their midpoint to
    the farthest chamber pixel. Without: the chamber's extent along its principal (largest-variance) axis. Pixels
    count by their footprint, not their centre: half a pixel (projected on the direction) is added at each free end,
    so a rasterised ellipse's axis is recovered without a one-pixel bias.
    """
    m = _is(mask2d, label)
    if m.ndim != 2:
        raise MeasureError(f"chamber_length: mask must be (H,W), got shape {m.shape}")
    sy, sx = _check_spacing(m, spacing, 2, "chamber_length")
    rows, cols = np.nonzero(m)
    if rows.size == 0:
        return float("nan")
    xy = np.stack([cols * sx, rows * sy], axis=1)  # mm
    half = lambda u: 0.5 * (abs(u[0]) * sx + abs(u[1]) * sy)  # half a pixel's extent along unit direction u
    if base_points is not None:
        b = np.asarray(base_points, dtype=float).reshape(-1, 2) * (sx, sy)
        d = xy - b.mean(axis=0)
        dist = np.hypot(d[:, 0], d[:, 1])
        i = int(np.argmax(dist))
        return float(dist[i] + (half(d[i] / dist[i]) if dist[i] > 0 else 0.0))
    if rows.size == 1:
        return float(min(sx, sy))
    c = xy - xy.mean(axis=0)
    u = np.linalg.eigh(c.T @ c)[1][:, -1]  # principal axis
    proj = c @ u
    return float(proj.max() - proj.min() + 2 * half(u))


def area_length_biplane(a2ch_mm2, a4ch_mm2, l_mm) -> float:
    """Biplane area-length volume in mL: V = 8/(3 pi) A1 A2 / L; a pair of lengths uses the shorter (convention)."""
    L = np.asarray(l_mm, dtype=float)
    if L.ndim and L.shape[-1] == 2:
        L = L.min(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scalar(8.0 / (3.0 * np.pi) * np.asarray(a2ch_mm2, float) * np.asarray(a4ch_mm2, float) / L / 1000.0)


def area_length_single(a_mm2, l_mm) -> float:
    """Single-plane area-length volume in mL: V = 8/(3 pi) A^2 / L."""
    return area_length_biplane(a_mm2, a_mm2, l_mm)


def _lengths(labels: np.ndarray, spacing, label: Label, base=None) -> np.ndarray:
    """(T,) chamber lengths per frame; base optional (T,2,2) annulus points per frame."""
    return np.array([chamber_length(labels[t], spacing, label, None if base is None else base[t])
                     for t in range(len(labels))])


def resample_cycle(x, n: int) -> np.ndarray:
    """(T, ...) values over one cardiac cycle -> (n, ...), linear in cycle phase and wrapping from the last frame to
    the first: pairs views with unequal frame counts, or gives every cine the same number of frames."""
    x = np.asarray(x)
    x = x if np.issubdtype(x.dtype, np.floating) else x.astype(float)
    if len(x) == n:
        return x
    t = np.arange(n) * len(x) / n
    i0 = np.floor(t).astype(int) % len(x)
    w = (t - np.floor(t)).reshape(-1, *([1] * (x.ndim - 1)))
    return ((1 - w) * x[i0] + w * x[(i0 + 1) % len(x)]).astype(x.dtype)


def _max_min(prefix: str, vol: np.ndarray) -> dict:
    """max/min volume, SV and EF of an atrium from its per-frame volume curve (NaN where it is never found)."""
    vol = np.asarray(vol, dtype=float)
    if not np.isfinite(vol).any():
        vmax = vmin = float("nan")
    else:
        vmax, vmin = float(np.nanmax(vol)), float(np.nanmin(vol))
    e = ejection(vmax, vmin)
    return {f"{prefix}Vmax": vmax, f"{prefix}Vmin": vmin, f"{prefix}SV": e["sv"], f"{prefix}EF": e["ef"]}


def atrial_volume_curve(labels_2ch, sp2, labels_4ch, sp4, label: Label = LA, base_2ch=None, base_4ch=None):
    """(T,) biplane area-length atrial volume (mL) per frame; the 2CH cine is resampled to the 4CH frame count."""
    l4 = np.asarray(labels_4ch)
    a4 = area_curve(l4, sp4, label)
    L4 = _lengths(l4, sp4, label, base_4ch)
    if labels_2ch is None:
        return area_length_single(a4, L4)
    l2 = np.asarray(labels_2ch)
    a2 = resample_cycle(area_curve(l2, sp2, label), len(l4))
    L2 = resample_cycle(_lengths(l2, sp2, label, base_2ch), len(l4))
    return area_length_biplane(a2, a4, np.stack([L2, L4], axis=-1))


def la_measures(labels_2ch, sp2, labels_4ch, sp4, base_2ch=None, base_4ch=None) -> dict:
    """LA max/min volume (biplane area-length from 2CH and 4CH, per frame), stroke volume and EF."""
    return _max_min("LA", atrial_volume_curve(labels_2ch, sp2, labels_4ch, sp4, LA, base_2ch, base_4ch))


def ra_measures(labels_4ch, sp4, base_4ch=None) -> dict:
    """RA max/min volume (single-plane area-length from 4CH, per frame), stroke volume and EF."""
    return _max_min("RA", atrial_volume_curve(None, None, labels_4ch, sp4, RA, None, base_4ch))


# ---------------------------------------------------------------- SAX stack and Table 1


def sax_measures(labels: np.ndarray, spacing: Sequence[float], ed: int | None = None, es: int | None = None,
                 hr_bpm: float | None = None, bsa: float | None = None) -> dict:
    """LV/RV EDV, ESV, SV, EF, LV mass (at ED), cardiac output and BSA-indexed values from a (T,Z,H,W) SAX stack.

    ED/ES default to the max/min of the LV volume curve (pass them when only some frames are segmented, e.g. ACDC's
    two frames: labels[[ed, es]] with ed=0, es=1); the RV uses the same frames.
    """
    lab = np.asarray(labels)
    if lab.ndim != 4:
        raise MeasureError(f"sax_measures: labels must be (T,Z,H,W), got shape {lab.shape}")
    lv = volume_curve(lab, spacing, LV)
    ced, ces = ed_es_from_curve(lv)
    ed, es = ced if ed is None else int(ed), ces if es is None else int(es)
    if not (0 <= ed < len(lab) and 0 <= es < len(lab)):
        raise MeasureError(f"sax_measures: ed={ed}, es={es} outside 0..{len(lab) - 1}")
    out = {"ED": ed, "ES": es}
    for name, lab_ in (("LV", LV), ("RV", RV)):
        edv, esv = simpson_volume(lab[ed], spacing, lab_), simpson_volume(lab[es], spacing, lab_)
        e = ejection(edv, esv)
        out.update({f"{name}EDV": edv, f"{name}ESV": esv, f"{name}SV": e["sv"], f"{name}EF": e["ef"]})
    out["LVM"] = lv_mass(simpson_volume(lab[ed], spacing, MYO))
    if hr_bpm is not None:
        out["HR"] = float(hr_bpm)
        out["LVCO"] = cardiac_output(out["LVSV"], hr_bpm)
    return _add_indexed(out, bsa)


def _add_indexed(out: dict, bsa: float | None) -> dict:
    """Add '<key>i' = value / BSA for every indexable key present (and BSA itself)."""
    if bsa is None:
        return out
    out["BSA"] = float(bsa)
    out.update({f"{k}i": index_bsa(out[k], bsa) for k in INDEXED if k in out})
    return out


def table1(sax=None, sax_spacing=None, la_2ch=None, sp_2ch=None, la_4ch=None, sp_4ch=None, *, height_cm=None,
           weight_kg=None, bsa=None, hr_bpm=None, ed=None, es=None, base_2ch=None, base_4ch=None) -> dict:
    """One subject's row of CUSSP's Table 1: LV/RV volumes, EF, mass, CO, LA biplane and RA single-plane volumes,
    each also indexed to BSA (Mosteller from height and weight unless `bsa` is given). Missing views are skipped.
    """
    if bsa is None and height_cm is not None and weight_kg is not None:
        bsa = bsa_mosteller(height_cm, weight_kg)
    out: dict = {}
    if sax is not None:
        out.update(sax_measures(sax, sax_spacing, ed=ed, es=es, hr_bpm=hr_bpm))
    elif hr_bpm is not None:
        out["HR"] = float(hr_bpm)
    if la_4ch is not None:
        out.update(la_measures(la_2ch, sp_2ch, la_4ch, sp_4ch, base_2ch, base_4ch))
        out.update(ra_measures(la_4ch, sp_4ch, base_4ch))
    return _add_indexed(out, bsa)


# ---------------------------------------------------------------- mitral valve (MVnet)


def valve_hinges(labels: np.ndarray, band_px: float = 2.0) -> np.ndarray:
    """(2, 2) mitral hinge points (x, y) of one long-axis frame: the two ends of the LV border that faces the LA.

    The border is the LV pixels within `band_px` of the LA (or the closest band when the chambers do not touch);
    its ends are the extremes along the border's principal direction (the valve line)."""
    from scipy import ndimage

    lab = np.asarray(labels)
    lv, la = _is(lab, LV), _is(lab, LA)
    if not lv.any() or not la.any():
        raise MeasureError(f"valve_hinges: no {'LV' if not lv.any() else 'LA'} in the frame; no valve to place")
    dist = ndimage.distance_transform_edt(~la)[lv]
    ys, xs = np.nonzero(lv)
    near = dist <= max(band_px, dist.min() + 1.0)
    pts = np.stack([xs[near], ys[near]], axis=1).astype(float)
    if len(pts) < 2:
        raise MeasureError("valve_hinges: the LV/LA border is a single pixel; no valve line")
    c = pts.mean(axis=0)
    u = np.linalg.svd(pts - c, full_matrices=False)[2][0]
    proj = (pts - c) @ u
    return np.stack([pts[proj.argmin()], pts[proj.argmax()]])


def valve_track(labels: np.ndarray) -> np.ndarray:
    """(T, 2, 2) hinge points of every frame of a long-axis label cine (T, H, W); NaN where a frame has no valve."""
    out = np.full((len(labels), 2, 2), np.nan)
    for t, frame in enumerate(np.asarray(labels).reshape(len(labels), *np.shape(labels)[-2:])):
        with contextlib.suppress(MeasureError):
            out[t] = valve_hinges(frame)
    return out


def fill_gaps(points: np.ndarray) -> np.ndarray:
    """Linearly interpolate frames without hinge points (NaN) along time, cyclically."""
    p = points.reshape(len(points), -1).copy()
    t = np.arange(len(p))
    ok = np.isfinite(p).all(axis=1)
    if ok.sum() < 2:
        raise MeasureError("fewer than two frames with a valve")
    for j in range(p.shape[1]):
        p[:, j] = np.interp(t, t[ok], p[ok, j], period=len(p))
    return p.reshape(points.shape)


def mv_displacement(points, spacing: Sequence[float], ed: int, apex=None) -> np.ndarray:
    """(T,) valve displacement in mm: mean signed perpendicular distance of the K points to the ED valve line.

    points (T,K,2) (x,y) pixels; spacing (sy, sx). The ED line passes through the ED points (a least-squares line
    when K > 2). Positive means toward the apex: the side of `apex` ((x,y) pixels) when given, else the side where
    the largest |displacement| lies (the annulus moves toward the apex in systole).
    """
    p = np.asarray(points, dtype=float)
    if p.ndim != 3 or p.shape[-1] != 2 or p.shape[1] < 2:
        raise MeasureError(f"mv_displacement: points must be (T,K>=2,2), got shape {p.shape}")
    if not 0 <= ed < len(p):
        raise MeasureError(f"mv_displacement: ed={ed} outside 0..{len(p) - 1}")
    sy, sx = _check_spacing(p, spacing, 2, "mv_displacement")
    mm = p * (sx, sy)
    ref = mm[ed]
    c = ref.mean(axis=0)
    u = np.linalg.svd(ref - c)[2][0]  # direction of the ED valve line
    n = np.array([-u[1], u[0]])  # its normal
    d = ((mm - c) @ n).mean(axis=1)
    if apex is not None:
        sign = np.sign((np.asarray(apex, dtype=float) * (sx, sy) - c) @ n) or 1.0
    else:
        sign = np.sign(d[np.argmax(np.abs(d))]) or 1.0
    return d * sign


def average_views(*curves) -> np.ndarray:
    """Mean of per-view displacement curves (e.g. 2CH and 4CH); unequal frame counts are paired by cycle phase."""
    cs = [np.asarray(c, dtype=float) for c in curves if c is not None]
    if not cs:
        raise MeasureError("average_views: no curve given")
    n = max(c.size for c in cs)
    return np.mean([resample_cycle(c, n) for c in cs], axis=0)


def mapse(displacement) -> float:
    """Mitral annular plane systolic excursion in mm: the maximum displacement toward the apex."""
    return float(np.nanmax(np.asarray(displacement, dtype=float)))


def mv_velocity(displacement_mm, frame_interval_ms: float, window: int | None = None, polyorder: int = 2,
                periodic: bool = True) -> np.ndarray:
    """(T,) valve velocity in cm/s (positive toward the apex) as the time derivative of the displacement.

    Central differences by default; window=odd int uses a Savitzky-Golay derivative (smooths noisy tracks).
    periodic=True treats the cine as one closed cycle (wraps at the ends); False uses one-sided ends.
    """
    d = np.asarray(displacement_mm, dtype=float)
    if frame_interval_ms <= 0:
        raise MeasureError(f"mv_velocity: frame interval must be > 0 ms, got {frame_interval_ms}")
    if window:
        v = signal.savgol_filter(d, window, polyorder, deriv=1, delta=frame_interval_ms,
                                 mode="wrap" if periodic else "interp")
    elif periodic:
        v = (np.roll(d, -1) - np.roll(d, 1)) / (2 * frame_interval_ms)
    else:
        v = np.gradient(d, frame_interval_ms)
    return v * 100.0  # mm/ms = m/s = 100 cm/s


def velocity_peaks(velocity, ed: int = 0, prominence: float = 0.1) -> dict:
    """s', e', a' magnitudes (cm/s) from a (T,) valve velocity curve (positive toward the apex).

    The curve is rolled so ED is frame 0 (a cine may start anywhere). Systole runs to the frame of maximal
    displacement (max of the integrated velocity); s' = its peak velocity toward the apex. In diastole the
    peaks away from the apex (prominence >= `prominence` x max |v|) give e' (the first) and a' (the last, atrial);
    a' is NaN when only one diastolic peak exists (no atrial kick, fused E/A).
    """
    v = np.roll(np.asarray(velocity, dtype=float), -int(ed))
    if v.ndim != 1 or v.size < 3:
        raise MeasureError(f"velocity_peaks: need a 1-D curve of >= 3 frames, got shape {v.shape}")
    es = int(np.argmax(np.cumsum(v)))
    s_prime = float(max(v[: es + 1].max(), 0.0))
    dia = -v[es:]
    pk, _ = signal.find_peaks(np.r_[0.0, dia, 0.0], height=0.0, prominence=prominence * np.abs(v).max())
    mags = dia[pk - 1]
    e_prime = float(mags[0]) if mags.size else float("nan")
    a_prime = float(mags[-1]) if mags.size > 1 else float("nan")
    return dict(s_prime=s_prime, e_prime=e_prime, a_prime=a_prime, es=(es + int(ed)) % v.size)


def valve_measures(displacement, frame_interval_ms: float, ed: int = 0, window: int | None = None) -> dict:
    """MAPSE (mm), s', e', a' (cm/s) and the velocity curve from a valve displacement curve (one view's, or the
    average over views)."""
    v = mv_velocity(displacement, frame_interval_ms, window)
    pk = velocity_peaks(v, ed)
    return dict(MAPSE=mapse(displacement), s_prime=pk["s_prime"], e_prime=pk["e_prime"], a_prime=pk["a_prime"],
                velocity=v)


def mv_measures(points, spacing, ed: int, frame_interval_ms: float, apex=None, window: int | None = None) -> dict:
    """MAPSE, s', e', a' and the displacement/velocity curves of one view's valve track."""
    d = mv_displacement(points, spacing, ed, apex)
    return dict(valve_measures(d, frame_interval_ms, ed, window), displacement=d)


# ---- Table 1 per subject from a cohort store and predicted labels ----------------------------------------
# the phantom's generating ("model") values in its meta, by cmrlib.measure key
MODEL_KEYS = {"LVEDV": "lv_edv_ml", "LVESV": "lv_esv_ml", "LVSV": "lv_sv_ml", "LVEF": "lv_ef", "LVM": "lv_mass_g",
              "RVEDV": "rv_edv_ml", "RVESV": "rv_esv_ml", "RVSV": "rv_sv_ml", "RVEF": "rv_ef", "LVCO": "co_l_min",
              "LAVmax": "la_max_ml", "LAVmin": "la_min_ml", "LAEF": "la_ef", "RAVmax": "ra_max_ml",
              "RAVmin": "ra_min_ml", "RAEF": "ra_ef"}


TABLE1_VIEWS = ("SAX", "2CH", "4CH")  # the views Table 1 reads: ventricles from the SAX stack, the atria biplane


def table1_frames(store: CohortStore, cine_id: str) -> list[int] | None:
    """The frames Table 1 needs segmented: a SAX stack's recorded ED and ES (its volumes, EF and mass read no
    others: a fifteenth of a 30-frame cine), else every frame (None: the atrial curves of a long-axis cine)."""
    a = store.attrs(cine_id)
    ed, es = a.get("ed"), a.get("es")
    return [int(ed), int(es)] if a.get("view") == "SAX" and ed is not None and es is not None and ed != es else None


def sax_frames(n_frames: int, n_labels: int, ed: int | None, es: int | None, predicted: bool, whole: bool
               ) -> tuple[int | None, int | None]:
    """The ED and ES frames a SAX stack's measures read in its `n_labels` label maps: (0, 1) for predictions at the
    recorded ED and ES only (`table1_frames`), (None, None) for a whole cine (its volume curve's max and min), else
    the recorded ED and ES."""
    if predicted and n_labels == 2 < n_frames:
        return 0, 1
    return (None, None) if whole and n_frames > 2 else (ed, es)


def _table1_inputs(cines: dict[str, Cine], labels_of, predicted: bool) -> dict:
    """table1 keyword arguments from one subject's cines and a cine -> label maps accessor (None: unusable).

    Predicted labels cover every frame; true labels count only where every frame is labelled, else (SAX)
    the labelled ED/ES frames are used."""
    kw = {}
    whole = lambda c: predicted or bool(c.labelled.all())
    sax = cines.get("SAX")
    if sax is not None and (lab := labels_of(sax)) is not None:
        ed, es = sax_frames(sax.n_frames, len(lab), sax.ed, sax.es, predicted, whole(sax))
        kw.update(sax=lab, sax_spacing=sax.spacing, ed=ed, es=es)
    for view, k, sp in (("4CH", "la_4ch", "sp_4ch"), ("2CH", "la_2ch", "sp_2ch")):
        c = cines.get(view)
        lab = None if c is None else labels_of(c)
        if lab is not None and whole(c):
            kw.update({k: lab, sp: c.spacing})
    if "la_2ch" in kw and "la_4ch" not in kw:  # biplane needs the 4CH; a lone 2CH gives no atrial volume
        kw.pop("la_2ch"), kw.pop("sp_2ch")
    return kw


def subject_measures(source: CohortStore | str | Path, predictions: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Table-1 measures per subject from predicted labels (`<m>_auto`: every frame, or a SAX stack's frames of
    `table1_frames`), true labels (`<m>_ref`) and, for the phantom, its generating values (`<m>_model`); BSA and
    heart rate from the subject's meta."""
    store = source if isinstance(source, CohortStore) else CohortStore(source)
    splits = store.splits()
    by_subject: dict[str, dict[str, Cine]] = {}
    for cid in predictions:
        c = store.read(cid)
        by_subject.setdefault(str(c.subject), {})[c.view] = c
    rows = []
    for sub, cines in sorted(by_subject.items()):
        meta = next(iter(cines.values())).meta
        row = dict(subject=sub, split=splits.get(sub), group=meta.get("group", meta.get("condition")))
        ctx = dict(bsa=meta.get("bsa_m2"), hr_bpm=meta.get("hr_bpm"))
        for kind, labels_of in (("auto", lambda c: predictions.get(c.cine_id)), ("ref", lambda c: c.labels)):
            kw = _table1_inputs(cines, labels_of, kind == "auto")
            try:
                m = table1(**kw, **ctx) if kw else {}
            except MeasureError as e:  # e.g. an empty predicted chamber: keep the subject, flag the reason
                m, row[f"error_{kind}"] = {}, str(e)
            row.update({f"{k}_{kind}": v for k, v in m.items() if k not in ("ED", "ES", "BSA", "HR")})
        row.update({f"{k}_model": meta[v] for k, v in MODEL_KEYS.items() if v in meta})
        rows.append(row)
    return pd.DataFrame(rows)


def es_overshoots(source: CohortStore | str | Path, predictions: Mapping[str, np.ndarray], manual: bool = True
                  ) -> pd.DataFrame:
    """By subject, the LV's volume at ES beyond its ED area slice by slice (`es_overshoot`) of each predicted SAX
    stack (`ES_OVERSHOOT_ML`), at the frames its measures read (`sax_frames`), and with `manual` of its manual masks
    at the recorded ED and ES where it has them at both (`_manual`; only those two frames read)."""
    store = source if isinstance(source, CohortStore) else CohortStore(source)
    rows = []
    for cid, lab in predictions.items():
        a = store.attrs(cid)
        if a.get("view") != "SAX":
            continue
        sp, recorded = tuple(a["spacing"]), (a.get("ed"), a.get("es"))
        ed, es = sax_frames(a["shape"][0], len(lab), *recorded, predicted=True, whole=True)
        if ed is None:
            ed, es = ed_es_from_curve(volume_curve(lab, sp, LV))
        row = {"subject": str(a["subject"]), ES_OVERSHOOT_ML: es_overshoot(lab[ed], lab[es], sp)}
        if manual and None not in recorded and (c := store.read(cid, recorded)).labels is not None \
                and c.labelled.all():
            row[f"{ES_OVERSHOOT_ML}_manual"] = es_overshoot(c.labels[0], c.labels[-1], sp)
        rows.append(row)
    return pd.DataFrame(rows, columns=["subject", ES_OVERSHOOT_ML, f"{ES_OVERSHOOT_ML}_manual"])


def measure_pairs(df: pd.DataFrame, ref: str = "ref",
                  measures: Sequence[str] = ("LVEDV", "LVESV", "LVEF", "LVM", "RVEDV", "RVESV", "RVEF",
                                             "LAVmax", "LAVmin", "LAEF", "RAVmax", "RAVmin", "RAEF")) -> dict:
    """measure -> (auto column, reference column) for the measures both sides of `df` have (for cmrlib.stats)."""
    return {m: (f"{m}_auto", f"{m}_{ref}") for m in measures
            if f"{m}_auto" in df and f"{m}_{ref}" in df and df[[f"{m}_auto", f"{m}_{ref}"]].notna().all(1).sum() >= 3}
