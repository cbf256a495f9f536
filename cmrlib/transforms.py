"""Intensity normalisation and invertible 2D geometry shared by segmentation and landmark tracking.

Geometry follows TorchIO's split: `Affine2D` is a deterministic, exactly invertible affine map
(rotation, isotropic scale, flip, translation, crop/resize to an output size) applied identically
to images (bilinear), masks (nearest) and (x, y) pixel points via OpenCV's `warpAffine`;
`RandomAffine2D` only samples an `Affine2D` from a generator. `SegAffine` / `IntensityAug` wrap
them as fastai transforms (augmentation on the training split only). Intensity changes follow the same
split: `bias_field`, `degrade` and `remap_labels` are deterministic; `IntensityAug` and
`LabelIntensityAug` (SynthSeg-style per-structure contrast, for sim-to-real) only draw their arguments, and
`WallAug` draws how far `thicken_wall` turns the inner blood pool into myocardium (small end-systolic cavities).

Pixel convention (OpenCV's and the `Cine` landmarks'): point (x, y) = (column, row) and the
centre of pixel [r, c] sits at (c, r).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch
from fastai.data.transforms import ItemTransform
from fastai.vision.augment import RandTransform
from fastai.torch_core import TensorImage, TensorMask
from fastai.vision.core import TensorPoint

from .labels import LV, MYO
from .utils import rng as _rng

__all__ = ["normalise", "clip_zscore", "median_iqr", "Affine2D", "RandomAffine2D", "fit_affine",
           "SegAffine", "IntensityAug", "PairAug", "LabelIntensityAug", "ClutterAug", "elastic_field", "warp_field",
           "bias_field", "degrade", "remap_labels", "thicken_wall", "WallAug"]


# ---- intensity -----------------------------------------------------------------------------
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


NORMS = {"zscore": clip_zscore, "iqr": median_iqr}


def normalise(x: np.ndarray, method: str = "zscore") -> np.ndarray:
    """Normalise intensities with a named method ('zscore' = percentile clip + z-score, 'iqr')."""
    if method not in NORMS:
        raise ValueError(f"unknown normalisation {method!r}; expected one of {sorted(NORMS)}")
    return NORMS[method](x)


# ---- deterministic intensity changes (the random transforms below only sample their arguments) --------
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


# ---- deterministic geometry ------------------------------------------------------------------
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


# ---- random geometry (samples, then delegates) -------------------------------------------------
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


# ---- optional elastic deformation (not invertible: images and masks only) -------------------------
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


# ---- fastai wrappers ----------------------------------------------------------------------------
def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


class SegAffine(RandTransform):
    """Random rotation/scale/flip/shift (+ optional elastic) applied alike to image, mask and points; training only.

    Items arrive already on the model grid (see `cmrlib.data`); the sampled map keeps that grid.
    Points (`TensorPoint`) are (x, y) pixel coordinates (use it before any point scaling).
    """

    split_idx, order = 0, 20

    def __init__(self, degrees: float = 15.0, scale: tuple[float, float] = (0.9, 1.1), flip_p: float = 0.0,
                 translate: float = 0.05, elastic: float = 0.0, elastic_sigma: float = 8.0, p: float = 1.0,
                 seed: int | None = 0):
        super().__init__(p=p)
        self.rand = RandomAffine2D(degrees=degrees, scale=scale, flip_p=flip_p, translate=translate, seed=seed)
        self.elastic, self.elastic_sigma = elastic, elastic_sigma
        self.gen = _rng(None if seed is None else seed + 1)

    def before_call(self, b, split_idx: int):
        self.do = self.p == 1.0 or self.gen.random() < self.p
        img = b[0] if isinstance(b, tuple) else b
        h, w = img.shape[-2:]
        self.aff = self.rand(Affine2D(size=(h, w), center=((w - 1) / 2, (h - 1) / 2)))
        self.fld = elastic_field((h, w), self.elastic, self.elastic_sigma, self.gen) if self.elastic > 0 else None

    def _img(self, x: np.ndarray, nearest: bool) -> np.ndarray:
        y = self.aff.mask(x) if nearest else self.aff.image(x)
        if self.fld is None:
            return y
        if y.ndim == 3:
            return np.stack([warp_field(c, self.fld, nearest) for c in y])
        return warp_field(y, self.fld, nearest)

    def encodes(self, x: TensorImage):
        return TensorImage(torch.from_numpy(self._img(_np(x), False)))

    def encodes(self, x: TensorMask):
        return TensorMask(torch.from_numpy(self._img(_np(x).astype(np.uint8), True)).to(x.dtype))

    def encodes(self, x: TensorPoint):
        return TensorPoint(torch.from_numpy(self.aff.points(_np(x))))


class IntensityAug(RandTransform):
    """Random coil bias field, gamma, contrast, coarser resolution, blur and noise on normalised images (training
    only) for robustness across scanners; each draw delegates to `bias_field` / `degrade` / OpenCV."""

    split_idx, order = 0, 21

    def __init__(self, gamma: tuple[float, float] = (0.7, 1.5), contrast: tuple[float, float] = (0.8, 1.2),
                 noise: float = 0.05, blur_p: float = 0.2, blur: tuple[float, float] = (0.5, 1.2), bias: float = 0.0,
                 lowres: tuple[float, float] = (1.0, 1.0), lowres_p: float = 0.0, p: float = 1.0,
                 seed: int | None = 0):
        super().__init__(p=p)
        self.gamma, self.contrast, self.noise, self.blur_p, self.blur_range = gamma, contrast, noise, blur_p, blur
        self.bias, self.lowres, self.lowres_p = bias, lowres, lowres_p
        self.gen = _rng(None if seed is None else seed + 2)

    def before_call(self, b, split_idx: int):
        g = self.gen
        self.do = self.p == 1.0 or g.random() < self.p
        self.g = float(np.exp(g.uniform(*np.log(self.gamma))))
        self.c = float(g.uniform(*self.contrast))
        self.sd = float(g.uniform(0, self.noise))
        self.blur = float(g.uniform(*self.blur_range)) if g.random() < self.blur_p else 0.0
        self.seed_noise = int(g.integers(2**31))
        # draws below come after the original ones, so a seed's earlier parameters are unchanged
        self.coeffs = g.uniform(-1, 1, (3, 3)) * self.bias if self.bias > 0 else None
        self.factor = float(g.uniform(*self.lowres)) if self.lowres_p > 0 and g.random() < self.lowres_p else 1.0

    def encodes(self, x: TensorImage):
        a = _np(x).astype(np.float32)
        lo, hi = a.min(), a.max()
        u = (a - lo) / max(hi - lo, 1e-6)
        if self.coeffs is not None:
            u = u * bias_field(u.shape[-2:], self.coeffs)
        u = u ** self.g  # gamma on [0, 1] (times the field), then back to a z-score
        u = (u - u.mean()) / max(float(u.std()), 1e-6) * self.c
        if self.factor > 1.0:
            u = degrade(u, self.factor)
        if self.blur > 0:
            flat = u.reshape(-1, *u.shape[-2:])
            u = np.stack([cv2.GaussianBlur(c, (0, 0), self.blur) for c in flat]).reshape(u.shape)
        u = u + np.random.default_rng(self.seed_noise).standard_normal(u.shape).astype(np.float32) * self.sd
        return TensorImage(torch.from_numpy(u.astype(np.float32)))


class PairAug(ItemTransform):
    """Base of the augmentations that read the mask of (image, mask) items (training only): with probability `p`
    (one draw from the transform's own seeded generator) `apply(b, gen)` changes the item, else it passes as is."""

    split_idx = 0

    def __init__(self, p: float, seed: int | None, offset: int):
        super().__init__()
        self.p = p
        self.gen = _rng(None if seed is None else seed + offset)

    def encodes(self, b):
        if len(b) < 2 or self.gen.random() >= self.p:
            return b
        return self.apply(b, self.gen)

    def apply(self, b, g: np.random.Generator):
        raise NotImplementedError


class LabelIntensityAug(PairAug):
    """Randomise each labelled region's contrast from the mask of (image, mask) items (training only): per label a
    log-uniform gain about its mean and a shift in image SDs (`remap_labels`), so a model trained on synthetic
    images learns shapes rather than one simulator's tissue contrasts (SynthSeg's idea, texture kept)."""

    order = 19

    def __init__(self, gain: tuple[float, float] = (0.6, 1.6), shift: float = 0.5, sigma: float = 1.0,
                 p: float = 0.8, n_labels: int = 6, seed: int | None = 0):
        super().__init__(p, seed, 4)
        self.gain, self.shift, self.sigma, self.n_labels = gain, shift, sigma, n_labels

    def apply(self, b, g):
        gain = np.exp(g.uniform(*np.log(self.gain), self.n_labels))
        img, msk = _np(b[0]).astype(np.float32), _np(b[1])
        shift = g.uniform(-self.shift, self.shift, self.n_labels) * max(float(img.std()), 1e-6)
        out = np.stack([remap_labels(c, msk, gain, shift, self.sigma) for c in img.reshape(-1, *msk.shape[-2:])])
        return (TensorImage(torch.from_numpy(out.reshape(img.shape))), b[1], *b[2:])


class ClutterAug(PairAug):
    """Paint random ellipses of image-like brightness into the background (label 0) of (image, mask) items (training
    only): distractor blobs that keep a model trained on sparse synthetic scenes from calling every bright disc a
    ventricle. Only pixels of `labels` are painted and masks never change, so `labels=(1,)` with dark `level`
    percentiles gives the LV blood pool extra papillary-muscle / trabecular spots that stay LV (ACDC's convention)."""

    order = 22

    def __init__(self, n: float = 6.0, radius: tuple[float, float] = (3.0, 20.0), p: float = 0.8,
                 labels: tuple[int, ...] = (0,), level: tuple[float, float] = (40.0, 99.5), seed: int | None = 0):
        super().__init__(p, seed, 3 + 10 * sum(labels))
        self.n, self.radius, self.labels, self.level = n, radius, tuple(labels), tuple(level)

    def apply(self, b, g):
        img, msk = _np(b[0]).astype(np.float32), _np(b[1])
        h, w = msk.shape[-2:]
        inside = np.isin(msk, self.labels)
        where = None if self.labels == (0,) else np.argwhere(inside)  # background: centres anywhere
        if where is not None and not len(where):
            return b
        layer, painted = img[0].copy(), np.zeros((h, w), np.uint8)
        for _ in range(int(g.poisson(self.n))):
            val = float(np.percentile(img, g.uniform(*self.level)))
            c = (int(g.integers(w)), int(g.integers(h))) if where is None else tuple(
                int(v) for v in where[g.integers(len(where))][::-1])
            ax = tuple(int(v) for v in g.uniform(*self.radius, size=2))
            ang = float(g.uniform(0, 180))
            cv2.ellipse(layer, c, ax, ang, 0, 360, val, -1)
            cv2.ellipse(painted, c, ax, ang, 0, 360, 1, -1)
        keep = (painted > 0) & inside
        out = img.copy()
        out[0][keep] = cv2.GaussianBlur(layer, (0, 0), 1.0)[keep]
        return (TensorImage(torch.from_numpy(out)), b[1], *b[2:])


class WallAug(PairAug):
    """Thicken the myocardium into the LV blood pool of (image, mask) items by a random fraction of the cavity's
    radius (`thicken_wall`, training only): small end-systolic cavities inside thick walls, the frames on which a
    phantom-trained model over-segments real LVs."""

    order = 18

    def __init__(self, frac: tuple[float, float] = (0.1, 0.6), p: float = 0.4, inner: int = LV, outer: int = MYO,
                 seed: int | None = 0):
        super().__init__(p, seed, 5)
        self.frac, self.inner, self.outer = tuple(frac), inner, outer

    def apply(self, b, g):
        img, msk = thicken_wall(_np(b[0]), _np(b[1]), float(g.uniform(*self.frac)), self.inner, self.outer)
        return (TensorImage(torch.from_numpy(img)), TensorMask(torch.from_numpy(msk)), *b[2:])
