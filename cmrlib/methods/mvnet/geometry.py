"""MVnet's geometry: the stage-1 frame and the invertible standardisation (0.75 mm, valve horizontal, apex down,
118 x 162 crop)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ...transforms import Affine2D, fit_affine, median_iqr
from ...utils import rng as _rng

S1_SIZE = (160, 160)  # stage-1 input (H, W)


STD_SIZE = (118, 162)  # standardised crop (H, W)


STD_RES = 0.75  # mm per standardised pixel


VIEWS = ("2CH", "4CH")


STAGES = ("1", "1+2", "1+2+2")


class MVnetError(ValueError):
    """MVnet inputs are unusable (no landmarks, anisotropic pixels, wrong shapes)."""


def stage1_geometry(shape: tuple[int, int], size: tuple[int, int] = S1_SIZE) -> Affine2D:
    """The stage-1 frame: the whole image fitted (aspect kept, zero-padded) into `size`."""
    return fit_affine(tuple(shape), size)


def _mm_scale(spacing: Sequence[float], res: float) -> float:
    sy, sx = (float(s) for s in spacing)
    if abs(sy - sx) > 1e-3 * max(sy, sx):
        raise MVnetError(f"standardise: anisotropic pixels {tuple(spacing)} mm are not supported; resample first")
    return sx / res


def standardise(points: np.ndarray, spacing: Sequence[float], size: tuple[int, int] = STD_SIZE,
                res: float = STD_RES, ed: int = 0) -> Affine2D:
    """The standardising geometry from a (T,2,2) track: the ED frame fixes centre and angle, the motion apex down.

    Anterior/lateral (point 0) lands left of inferior/septal (point 1) on a horizontal line through the crop
    centre; if the valve midpoint moves up on average relative to its end-diastolic position (the valve is most
    basal there, so every other frame lies toward the apex) the map is mirrored so it moves down. `ed` is the
    end-diastolic frame: 0 for ECG-triggered cines (the paper's "first frame"); cines that start elsewhere in
    the cycle pass theirs, so the valve never leaves the crop's upper half.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2, 2)
    c, d = p[ed].mean(0), p[ed, 1] - p[ed, 0]
    if not np.isfinite(p[ed]).all() or np.hypot(*d) < 1e-6:
        raise MVnetError(f"standardise: ED-frame points {p[ed].tolist()} do not define a valve line")
    scale = _mm_scale(spacing, res)

    def geom(flip: bool) -> Affine2D:
        dx, dy = (-d[0] if flip else d[0]), d[1]  # Affine2D flips x before rotating
        return Affine2D(size=tuple(size), center=(float(c[0]), float(c[1])), angle=float(np.degrees(np.arctan2(dy, dx))),
                        scale=scale, flip=flip)

    g = geom(False)
    if len(p) > 1:
        mid = p.mean(1)
        down = (np.delete(mid, ed, 0) - mid[ed]) @ g.matrix[1, :2]  # vertical motion of the valve centre in the crop
        if down.mean() < 0:
            g = geom(True)
    return g


def perturb_points(points: np.ndarray, spacing: Sequence[float], sd_mm: float,
                   gen: int | np.random.Generator | None = 0) -> np.ndarray:
    """Points moved by iid Gaussian noise of `sd_mm` per coordinate (a stage-1-like error, for stage-2 training)."""
    g = _rng(gen)
    p = np.asarray(points, dtype=np.float64)
    sy, sx = (float(s) for s in spacing)
    return (p + g.normal(0.0, sd_mm, p.shape) / np.array([sx, sy])).astype(np.float32)


def to_unit(pts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(x, y) pixels of a (H, W) frame to the network's units: 0 at the centre, +-1 at the edges."""
    h, w = size
    return ((np.asarray(pts, dtype=np.float32) - ((w - 1) / 2, (h - 1) / 2)) / (w / 2, h / 2)).astype(np.float32)


def from_unit(u: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Inverse of `to_unit`."""
    h, w = size
    return (np.asarray(u, dtype=np.float32) * (w / 2, h / 2) + ((w - 1) / 2, (h - 1) / 2)).astype(np.float32)


def _norm(frames: np.ndarray) -> np.ndarray:
    """Median/IQR-normalise each frame of a (T,H,W) stack (MVnet's intensity scaling)."""
    return np.stack([median_iqr(f) for f in frames]).astype(np.float32)


def frames_input(pixels: np.ndarray, geom: Affine2D) -> torch.Tensor:
    """Network input (T,1,H,W) for all frames of a cine under one geometry."""
    warped = geom.image(np.asarray(pixels, dtype=np.float32))
    return torch.from_numpy(_norm(warped.reshape(-1, *geom.size)))[:, None]
