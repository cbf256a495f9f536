"""CUSSP's preprocessing of a 4CH cine: the valve line between the LA and LV masks (a linear SVM, as the authors
fit), a square patch around the valve centre with the valve horizontal and the LA on top (an `Affine2D`, so a
patch maps back onto the frame), resampled at a fixed mm per pixel, and histogram equalisation over the left
atrium's intensities pooled over the cycle."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...labels import LA, LV
from ...record import Cine
from ...transforms.geometry import Affine2D


class ValveError(ValueError):
    """A cine has no valve to localise (no LA or LV in its masks) or its valve patch leaves the image."""


@dataclass(frozen=True)
class Valve:
    """The mitral valve of one frame: centre (x, y) px, unit normal pointing from the LV into the LA, and the
    two ends (x, y) of the valve line."""

    center: tuple[float, float]
    normal: tuple[float, float]
    ends: np.ndarray

    @property
    def angle(self) -> float:
        """The `Affine2D` rotation (degrees) that turns the LV->LA normal straight up (valve horizontal, LA on top)."""
        nx, ny = self.normal
        return float(np.degrees(np.arctan2(nx, -ny)))


def valve_line(labels: np.ndarray, band_px: float = 1.5) -> Valve:
    """The valve of one long-axis label frame: a linear SVM separates LA from LV pixels; the valve points are the
    LA/LV pixels within `band_px` of that line and next to the other chamber; its centre is their midpoint
    along the line."""
    from scipy import ndimage
    from sklearn.svm import LinearSVC

    lab = np.asarray(labels)
    la, lv = lab == LA, lab == LV
    if not la.any() or not lv.any():
        raise ValveError(f"no {'LA' if not la.any() else 'LV'} in the segmentation; no valve to localise")
    ys, xs = np.nonzero(la | lv)
    pts = np.stack([xs, ys], 1).astype(float)
    y = la[ys, xs].astype(int)
    mu, sd = pts.mean(0), pts.std(0).clip(min=1.0)
    svm = LinearSVC(C=1.0, class_weight="balanced", max_iter=5000).fit((pts - mu) / sd, y)
    w = svm.coef_[0] / sd  # back to pixel units: w . p + b = 0
    b = float(svm.intercept_[0] - (svm.coef_[0] * mu / sd).sum())
    norm = float(np.linalg.norm(w))
    n = w / norm  # points toward the LA (the SVM's positive class)
    dist = (pts @ w + b) / norm
    touching = np.where(y == 1, ndimage.binary_dilation(lv, iterations=2)[ys, xs],
                        ndimage.binary_dilation(la, iterations=2)[ys, xs])
    near = (np.abs(dist) <= band_px) & touching
    if near.sum() < 2:
        raise ValveError("the LA and LV masks do not meet; no valve line between them")
    along = np.array([-n[1], n[0]])
    on_line = pts[near] - dist[near, None] * n  # valve points projected onto the line
    t = on_line @ along
    ends = np.stack([on_line[t.argmin()], on_line[t.argmax()]])
    return Valve(center=tuple(ends.mean(0)), normal=(float(n[0]), float(n[1])), ends=ends)


def patch_map(valve: Valve, spacing_mm: float, size: int = 64, patch_mm: float = 1.8) -> Affine2D:
    """The map from a frame (pixel `spacing_mm`) to the `size` x `size` patch at `patch_mm` per pixel, valve at the
    centre, horizontal, LA on top (the authors' 32 px into the LA and 32 into the LV at the UK Biobank's 1.8 mm)."""
    return Affine2D(size=(size, size), center=valve.center, angle=valve.angle, scale=float(spacing_mm) / patch_mm)


def inside_fraction(aff: Affine2D, frame_shape: tuple[int, int]) -> float:
    """Fraction of the patch that falls inside the frame (1.0 unless the valve sits near the image border)."""
    return float(aff.image(np.ones(frame_shape, np.float32)).mean())


def equalise_la(pixels: np.ndarray, la_mask: np.ndarray) -> np.ndarray:
    """Histogram-equalise a cine over the left atrium's intensity range: every pixel -> the fraction of LA pixels
    (pooled over the frames) darker than it, so the LA's intensities spread over [0, 1] and a systolic jet's
    darkening stands out; below the LA's range -> 0, above -> 1."""
    ref = np.sort(np.asarray(pixels)[np.asarray(la_mask, bool)].ravel())
    if ref.size < 10:
        raise ValveError(f"the left atrium has {ref.size} pixels over the cycle; too few to equalise on")
    return (np.searchsorted(ref, pixels, side="right") / ref.size).astype(np.float32)


@dataclass
class ValvePatch:
    """One cine's preprocessed patch cine (T, S, S) in [0, 1], the patch map and the frame its geometry came from."""

    pixels: np.ndarray
    affine: Affine2D
    frame: int
    valve: Valve


def valve_patch(cine: Cine, labels: np.ndarray, frame: int | None = None, size: int = 64, patch_mm: float = 1.8,
                min_inside: float = 0.9) -> ValvePatch:
    """Localise the valve on one frame (default ED) of a 4CH cine's masks, cut the patch from every frame with that
    one geometry, and equalise it over the LA's intensities; `ValveError` if the valve cannot be placed or the
    patch leaves the image (less than `min_inside` of it inside)."""
    if cine.is_stack:
        raise ValveError(f"{cine.cine_id}: a SAX stack has no valve view; CUSSP needs a 4CH cine")
    labels = np.asarray(labels)
    f = int(frame if frame is not None else cine.ed or 0)
    valve = valve_line(labels[f])
    aff = patch_map(valve, float(cine.spacing[-1]), size, patch_mm)
    inside = inside_fraction(aff, cine.pixels.shape[-2:])
    if inside < min_inside:
        raise ValveError(f"the valve lies near the image border: {100 * (1 - inside):.0f} % of its patch is outside "
                         f"the frame (at most {100 * (1 - min_inside):.0f} % allowed)")
    eq = equalise_la(cine.pixels, labels == LA)
    return ValvePatch(pixels=aff.image(eq), affine=aff, frame=f, valve=valve)
