"""Corruptions of a cine patch (T, H, W) for a restoration pretext task (SSLHF, after Models Genesis): local pixel
shuffling in small windows, patch covering and frame covering.

Each corruption is a deterministic map whose parameters are explicit (`LocalShuffle`, `PatchCover`; a frame cover
is a `PatchCover` whose boxes are whole frames);
`random_*` functions draw those parameters from a generator, so a corrupted patch can be rebuilt, shown and
tested. Covered pixels get random values drawn uniformly within the patch's own intensity range."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int, int]  # frame, top, left, height, width


@dataclass(frozen=True)
class LocalShuffle:
    """Permute the pixels inside each window (frame, top, left, height, width) by its own permutation."""

    windows: tuple[Box, ...]
    perms: tuple[np.ndarray, ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.array(x, copy=True)
        for (t, r, c, h, w), perm in zip(self.windows, self.perms):
            block = out[t, r:r + h, c:c + w].reshape(-1)
            out[t, r:r + h, c:c + w] = block[perm].reshape(h, w)
        return out


@dataclass(frozen=True)
class PatchCover:
    """Replace each box (frame, top, left, height, width) by its array of values."""

    boxes: tuple[Box, ...]
    values: tuple[np.ndarray, ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.array(x, copy=True)
        for (t, r, c, h, w), v in zip(self.boxes, self.values):
            out[t, r:r + h, c:c + w] = v
        return out


def _uniform_like(x: np.ndarray, shape, g: np.random.Generator) -> np.ndarray:
    """Random values within the patch's intensity range, in its dtype."""
    return g.uniform(float(np.min(x)), float(np.max(x)), shape).astype(np.asarray(x).dtype)


def random_local_shuffle(x: np.ndarray, g: np.random.Generator, windows_per_frame: int = 8,
                         max_frac: float = 0.125) -> LocalShuffle:
    """Models Genesis' local shuffling: per frame, windows up to `max_frac` of the frame's side, each permuted."""
    t_, h_, w_ = np.shape(x)
    wins, perms = [], []
    big_h, big_w = max(2, int(h_ * max_frac)), max(2, int(w_ * max_frac))
    for t in range(t_):
        for _ in range(windows_per_frame):
            h, w = int(g.integers(2, big_h + 1)), int(g.integers(2, big_w + 1))
            r, c = int(g.integers(0, h_ - h + 1)), int(g.integers(0, w_ - w + 1))
            wins.append((t, r, c, h, w))
            perms.append(g.permutation(h * w))
    return LocalShuffle(tuple(wins), tuple(perms))


def random_patch_cover(x: np.ndarray, g: np.random.Generator, max_patches: int = 5,
                       area: tuple[float, float] = (1 / 36, 1 / 9)) -> PatchCover:
    """Per frame 1 to `max_patches` boxes, each covering a fraction `area` of the frame, filled with random values."""
    t_, h_, w_ = np.shape(x)
    boxes, values = [], []
    for t in range(t_):
        for _ in range(int(g.integers(1, max_patches + 1))):
            frac = g.uniform(*area)
            aspect = g.uniform(0.75, 1.33)
            h = int(np.clip(round(np.sqrt(frac * h_ * w_ * aspect)), 1, h_))
            w = int(np.clip(round(frac * h_ * w_ / h), 1, w_))
            r, c = int(g.integers(0, h_ - h + 1)), int(g.integers(0, w_ - w + 1))
            boxes.append((t, r, c, h, w))
            values.append(_uniform_like(x, (h, w), g))
    return PatchCover(tuple(boxes), tuple(values))


def random_frame_cover(x: np.ndarray, g: np.random.Generator, groups: int = 5, max_len: int = 3) -> PatchCover:
    """Up to `groups` runs of 1 to `max_len` consecutive frames, each frame replaced by random values."""
    t_, h_, w_ = np.shape(x)
    frames: set[int] = set()
    for _ in range(groups):
        n = int(g.integers(1, max_len + 1))
        start = int(g.integers(0, max(1, t_ - n + 1)))
        frames.update(range(start, min(t_, start + n)))
    picked = sorted(frames)
    return PatchCover(tuple((t, 0, 0, h_, w_) for t in picked), tuple(_uniform_like(x, (h_, w_), g) for _ in picked))


CORRUPTIONS = {"shuffle": random_local_shuffle, "patch": random_patch_cover, "frame": random_frame_cover}


def random_corruption(x: np.ndarray, g: np.random.Generator, kinds=("shuffle", "patch", "frame"), p: float = 0.5
                      ) -> list:
    """The deterministic corruptions to apply to one patch: each kind with probability `p`, at least one."""
    kinds = list(kinds)
    chosen = [k for k in kinds if g.random() < p] or [kinds[int(g.integers(len(kinds)))]]
    return [CORRUPTIONS[k](x, g) for k in chosen]


def corrupt(x: np.ndarray, transforms: list) -> np.ndarray:
    """Apply deterministic corruptions in order."""
    for f in transforms:
        x = f(x)
    return x
