"""Invertible 2D geometry: `Affine2D` maps images (bilinear), masks (nearest) and (x, y) points with one
OpenCV matrix and inverts exactly; `RandomAffine2D` only samples one; elastic fields for augmentation.

Pixel convention (OpenCV's and the `Cine` landmarks'): point (x, y) = (column, row), the centre of pixel [r, c]
sits at (c, r)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ..utils import rng as _rng


@dataclass(frozen=True)
class Affine2D:
    """An invertible 2D affine map from an input frame to an output frame of `size` (H, W).

    The input point `center` (x, y) (default: the input's centre) lands on the output centre
    shifted by `shift` (output px), after a horizontal `flip` about it, isotropic `scale`
    (output px per input px) and a counter-clockwise rotation by `angle` degrees (as displayed,
    rows pointing down).
    """

    size: tuple[int, int]
    center: tuple[float, float]
    angle: float = 0.0
    scale: float = 1.0
    flip: bool = False
    shift: tuple[float, float] = (0.0, 0.0)

    @property
    def matrix(self) -> np.ndarray:
        """The 2x3 forward matrix (input px -> output px), as `cv2.warpAffine` takes it."""
        h, w = self.size
        cx, cy = self.center
        t = np.radians(self.angle)
        # rows point down, so a displayed counter-clockwise turn is a clockwise one in (x, y) maths
        rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
        lin = rot * self.scale @ np.diag([-1.0 if self.flip else 1.0, 1.0])
        out_c = np.array([(w - 1) / 2 + self.shift[0], (h - 1) / 2 + self.shift[1]])
        return np.hstack([lin, (out_c - lin @ np.array([cx, cy]))[:, None]])

    @property
    def inverse_matrix(self) -> np.ndarray:
        """The 2x3 inverse matrix (output px -> input px)."""
        return cv2.invertAffineTransform(self.matrix)

    @staticmethod
    def _warp(a: np.ndarray, m: np.ndarray, size: tuple[int, int], interp: int, fill: float) -> np.ndarray:
        """cv2.warpAffine on (H, W) or channel-first (C, H, W) arrays, keeping the dtype."""
        a = np.asarray(a)
        dt = a.dtype
        src = a.astype(np.float32) if dt in (np.float64, bool) else a
        dsize = (int(size[1]), int(size[0]))
        if src.ndim == 2:
            out = cv2.warpAffine(src, m, dsize, flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
        else:  # OpenCV takes channels last, at most 512 at a time
            chunks = [np.moveaxis(src[i:i + 256], 0, -1) for i in range(0, len(src), 256)]
            out = np.concatenate([cv2.warpAffine(c, m, dsize, flags=interp, borderMode=cv2.BORDER_CONSTANT,
                                                 borderValue=fill).reshape(*dsize[::-1], -1) for c in chunks], -1)
            out = np.moveaxis(out, -1, 0)
        return np.ascontiguousarray(out).astype(dt, copy=False)

    def image(self, img: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Warp an image (H, W) or a (C, H, W) stack bilinearly into the output frame."""
        return self._warp(img, self.matrix, self.size, cv2.INTER_LINEAR, fill)

    def mask(self, m: np.ndarray) -> np.ndarray:
        """Warp a label map with nearest-neighbour interpolation (labels stay labels)."""
        return self._warp(np.asarray(m, dtype=np.uint8), self.matrix, self.size, cv2.INTER_NEAREST, 0)

    def points(self, pts: np.ndarray) -> np.ndarray:
        """Map (..., 2) points (x, y) from the input to the output frame."""
        return _apply(self.matrix, pts)

    def inverse_points(self, pts: np.ndarray) -> np.ndarray:
        """Map (..., 2) output-frame points back to input pixels (exact inverse of `points`)."""
        return _apply(self.inverse_matrix, pts)

    def inverse_image(self, img: np.ndarray, in_size: tuple[int, int], nearest: bool = False) -> np.ndarray:
        """Warp an output-frame image (or (C, H, W) stack, e.g. class scores) back onto the input grid."""
        interp = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
        return self._warp(img, self.matrix, in_size, interp, 0)

    def then(self, **changes) -> "Affine2D":
        """A copy with some parameters changed (e.g. an augmentation on top of a base geometry)."""
        return replace(self, **changes)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Affine 2x3 matrix on (..., 2) points, computed in float64, returned as float64 input or else float32."""
    p = np.asarray(pts)
    out = p.astype(np.float64) @ m[:, :2].T + m[:, 2]
    return out if p.dtype == np.float64 else out.astype(np.float32)


def fit_affine(in_shape: tuple[int, int], size: int | tuple[int, int], in_spacing: tuple[float, float] | None = None,
               spacing: float | None = None, center: tuple[float, float] | None = None) -> Affine2D:
    """The base map onto a fixed grid: resample to `spacing` mm (and crop), or without it fit the frame in `size`."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    h, w = in_shape
    if spacing is not None:
        if in_spacing is None:
            raise ValueError("fit_affine: resampling to a spacing needs the input spacing")
        if abs(in_spacing[0] - in_spacing[1]) > 1e-3 * max(in_spacing):
            raise ValueError(f"fit_affine: anisotropic in-plane spacing {in_spacing} is not supported")
        scale = float(in_spacing[1]) / float(spacing)
    else:
        scale = min(size[0] / h, size[1] / w)
    c = ((w - 1) / 2, (h - 1) / 2) if center is None else tuple(float(v) for v in center)
    return Affine2D(size=size, center=c, scale=scale)


@dataclass
class RandomAffine2D:
    """Sample rotation, isotropic scale, flip and translation for an `Affine2D` from a seed or generator."""

    degrees: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    flip_p: float = 0.0
    translate: float = 0.05  # fraction of the output size
    seed: int | np.random.Generator | None = 0
    gen: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self):
        self.gen = _rng(self.seed)

    def sample(self, base: Affine2D, gen: np.random.Generator | None = None) -> Affine2D:
        """Draw parameters and compose them with `base` (the resampling/cropping geometry)."""
        g = gen or self.gen
        h, w = base.size
        lo, hi = np.log(self.scale[0]), np.log(self.scale[1])
        return base.then(
            angle=base.angle + float(g.uniform(-self.degrees, self.degrees)),
            scale=base.scale * float(np.exp(g.uniform(lo, hi))),
            flip=bool(base.flip ^ (g.random() < self.flip_p)),
            shift=(base.shift[0] + float(g.uniform(-1, 1) * self.translate * w),
                   base.shift[1] + float(g.uniform(-1, 1) * self.translate * h)))

    def __call__(self, base: Affine2D) -> Affine2D:
        return self.sample(base)


def elastic_field(shape: tuple[int, int], alpha: float, sigma: float,
                  gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random displacement field (map_x, map_y) for `cv2.remap`; alpha in px, sigma in px."""
    h, w = shape
    d = gen.standard_normal((2, h, w)).astype(np.float32)
    d = np.stack([cv2.GaussianBlur(c, (0, 0), sigma) for c in d])
    d *= alpha / max(float(np.abs(d).max()), 1e-6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return xx + d[0], yy + d[1]


def warp_field(a: np.ndarray, fld: tuple[np.ndarray, np.ndarray], nearest: bool = False) -> np.ndarray:
    """Apply a displacement field from `elastic_field` to an image or a label map."""
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    dt = np.asarray(a).dtype
    return cv2.remap(np.asarray(a), fld[0], fld[1], interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(dt)
