"""Random augmentations as fastai transforms (training split only): each draws its parameters, then applies a
deterministic map from `geometry` or `intensity`."""
from __future__ import annotations

import cv2
import numpy as np
import torch
from fastai.data.transforms import ItemTransform
from fastai.torch_core import TensorImage, TensorMask
from fastai.vision.augment import RandTransform
from fastai.vision.core import TensorPoint

from ..labels import LV, MYO
from ..utils import rng as _rng
from ..utils import seed_for
from .geometry import Affine2D, RandomAffine2D, elastic_field, warp_field
from .intensity import bias_field, degrade, remap_labels, thicken_wall


def _stream(seed: int | None, *names) -> int | None:
    """A transform's own seed, derived from the run seed by name (None stays unseeded)."""
    return None if seed is None else seed_for(seed, *names)


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
        self.rand = RandomAffine2D(degrees=degrees, scale=scale, flip_p=flip_p, translate=translate,
                                   seed=_stream(seed, "SegAffine", "affine"))
        self.elastic, self.elastic_sigma = elastic, elastic_sigma
        self.gen = _rng(_stream(seed, "SegAffine", "elastic"))

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
        self.gen = _rng(_stream(seed, "IntensityAug"))

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

    def __init__(self, p: float, seed: int | None, *stream):
        super().__init__()
        self.p = p
        self.gen = _rng(_stream(seed, type(self).__name__, *stream))

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
        super().__init__(p, seed)
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
        super().__init__(p, seed, *labels)  # its own stream per painted label set (background blobs, LV spots)
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
        super().__init__(p, seed)
        self.frac, self.inner, self.outer = tuple(frac), inner, outer

    def apply(self, b, g):
        img, msk = thicken_wall(_np(b[0]), _np(b[1]), float(g.uniform(*self.frac)), self.inner, self.outer)
        return (TensorImage(torch.from_numpy(img)), TensorMask(torch.from_numpy(msk)), *b[2:])


class HeartCrop(PairAug):
    """Crop (image, mask) items to a `size`-px window round the labelled structures' centre, shifted at random by up
    to `jitter` of the window (training only): a fully convolutional segmenter learns from the heart and its
    surroundings at a fraction of the whole canvas's cost (96 of 128 px: about two thirds of a step), and still reads
    whole frames. Frames with no label get a random window."""

    order = 30  # after every other augmentation, which see the whole canvas

    def __init__(self, size: int = 96, jitter: float = 0.25, seed: int | None = 0):
        super().__init__(1.0, seed)
        self.size, self.jitter = int(size), float(jitter)

    def apply(self, b, g):
        msk = _np(b[1])
        h, w = msk.shape[-2:]
        if self.size >= min(h, w):
            return b
        fg = np.argwhere(msk > 0)
        centre = fg.mean(0) if len(fg) else np.array([g.uniform(0, h), g.uniform(0, w)])
        centre = centre + g.uniform(-1, 1, 2) * self.jitter * self.size
        y0, x0 = (int(np.clip(round(c - self.size / 2), 0, n - self.size)) for c, n in zip(centre, (h, w)))
        win = (..., slice(y0, y0 + self.size), slice(x0, x0 + self.size))
        return (TensorImage(b[0][win].contiguous()), TensorMask(b[1][win].contiguous()), *b[2:])
