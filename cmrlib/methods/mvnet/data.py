"""Point tracks from cines and the per-frame (image, points) dataset of each stage, augmented on the fly."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from ...record import Cine
from ...transforms import Affine2D, RandomAffine2D, median_iqr
from ...utils import rng as _rng
from ...utils import seed_for
from .geometry import S1_SIZE, STD_SIZE, MVnetError, perturb_points, stage1_geometry, standardise, to_unit


@dataclass
class Track:
    """One cine's frames with its spacing and a (T,2,2) point track (reference or prediction)."""

    pixels: np.ndarray
    spacing: tuple[float, float]
    points: np.ndarray | None = None
    frame_times: np.ndarray | None = None
    ed: int = 0
    subject: str = ""
    view: str = ""

    @property
    def frame_interval(self) -> float:
        """Mean ms between frames (NaN for one frame or no times)."""
        ft = self.frame_times
        return float(np.diff(ft).mean()) if ft is not None and len(ft) > 1 else float("nan")


def tracks_from_cines(cines: Iterable[Cine], landmark_set: str | None = "obsA") -> list[Track]:
    """`Track`s from 2D long-axis cines, carrying one landmark set (None: images only, e.g. real cines)."""
    out = []
    for c in cines:
        if c.is_stack:
            raise MVnetError(f"cine {c.cine_id}: MVnet needs 2D long-axis frames (T,H,W), got {c.pixels.shape}")
        pts = None
        if landmark_set is not None:
            if landmark_set not in c.landmarks:
                raise MVnetError(f"cine {c.cine_id}: no landmark set {landmark_set!r} (has {sorted(c.landmarks)})")
            pts = c.landmarks[landmark_set][:, :2]
        out.append(Track(c.pixels, tuple(c.spacing), pts, c.frame_times, int(c.ed or 0), c.subject, c.view))
    return out


def load_cines(store, view: str, split: str, limit: int | None = None) -> list[Cine]:
    """The cines of one view and split from a `CohortStore` (the first `limit` by id when given)."""
    return [store.read(i) for i in store.select(view, split, limit)]


def mixed_tracks(cines: Sequence[Cine], sets: Sequence[str] = ("obsA", "obsB"), seed: int = 0) -> list[Track]:
    """One track per cine with its landmark set drawn at random from `sets` (a mixed-convention training set)."""
    g = _rng(seed)
    return [tracks_from_cines([c], str(g.choice(list(sets))))[0] for c in cines]


@dataclass
class Aug:
    """MVnet's augmentation: isotropic scale +-10 %, rotation +-10 deg, translation +-3 px."""

    degrees: float = 10.0
    scale: float = 0.10
    shift_px: float = 3.0

    def sampler(self, size: tuple[int, int]) -> RandomAffine2D:
        return RandomAffine2D(degrees=self.degrees, scale=(1 - self.scale, 1 + self.scale), flip_p=0.0,
                              translate=self.shift_px / max(size), seed=None)


class PointFrames(torch.utils.data.Dataset):
    """(image, target) items for one stage: every frame of every track, drawn on the fly.

    stage 1: the fitted 160x160 frame; stage 2: the frame standardised from the reference track perturbed by
    `perturb_mm` (so stage 2 learns to undo stage-1 errors). `aug` adds MVnet's random affine on top. Targets are
    the 4 normalised coordinates (`to_unit`). Randomness flows from `seed`; `fixed=True` redraws the same sample
    for an item every time (validation).
    """

    def __init__(self, tracks: Sequence[Track], stage: int = 1, aug: Aug | None = None, perturb_mm: float = 0.0,
                 seed: int = 0, fixed: bool = False, frames_per_cine: int | None = None):
        if stage not in (1, 2):
            raise MVnetError(f"stage must be 1 or 2, got {stage}")
        for t in tracks:
            if t.points is None:
                raise MVnetError(f"track {t.subject}_{t.view}: training needs reference points")
        self.tracks, self.stage, self.aug, self.perturb_mm = list(tracks), stage, aug, float(perturb_mm)
        self.seed, self.fixed, self.fpc = seed, fixed, frames_per_cine
        self.size = S1_SIZE if stage == 1 else STD_SIZE
        self.gen = _rng(seed)
        self.rand = aug.sampler(self.size) if aug is not None else None

    def __len__(self):
        return len(self.tracks) * self.fpc if self.fpc else sum(len(t.pixels) for t in self.tracks)

    def new_empty(self) -> "PointFrames":
        """An empty copy (what `Learner.export` keeps instead of the data)."""
        return PointFrames([], self.stage, self.aug, self.perturb_mm, self.seed, self.fixed, self.fpc)

    def frame(self, k: int, gen: np.random.Generator) -> tuple[int, int]:
        """(track, frame) of item k: all frames in order, or `frames_per_cine` per track (random, or evenly spaced when fixed)."""
        if not self.fpc:
            if not hasattr(self, "_items"):
                self._items = [(i, f) for i, t in enumerate(self.tracks) for f in range(len(t.pixels))]
            return self._items[k]
        i, j = divmod(k, self.fpc)
        n = len(self.tracks[i].pixels)
        return i, (j * n // self.fpc if self.fixed else int(gen.integers(n)))

    def geometry(self, i: int, gen: np.random.Generator) -> Affine2D:
        """The (possibly perturbed and augmented) geometry of track i for one draw."""
        t = self.tracks[i]
        if self.stage == 1:
            g = stage1_geometry(t.pixels.shape[1:])
        else:  # stage-1-like errors of every size up to perturb_mm, so both stage-2 passes are trained
            sd = self.perturb_mm * (1.0 if self.fixed else float(gen.random()))
            pts = perturb_points(t.points, t.spacing, sd, gen) if sd > 0 else t.points
            g = standardise(pts, t.spacing, self.size, ed=t.ed)
        return self.rand.sample(g, gen) if self.rand is not None else g

    def __getitem__(self, k: int):
        gen = _rng([self.seed, k]) if self.fixed else self.gen  # validation: item k's own fixed stream
        i, f = self.frame(k, gen)
        g, t = self.geometry(i, gen), self.tracks[i]
        img = median_iqr(g.image(t.pixels[f]))
        y = to_unit(g.points(t.points[f]), self.size).reshape(-1)
        return torch.from_numpy(img)[None], torch.from_numpy(y)


@dataclass(frozen=True)
class Tracks:
    """Each view's cines and valve tracks by split and annotation, the second observer's and the true tracks of
    the test cines, and the test tracks (observer 1, convention A)."""

    cines: dict
    tracks: dict
    obs: dict
    tests: dict


def load_tracks(store, views: Sequence[str], max_train: int | None, max_test: int | None, eval_splits: Sequence[str]
                ) -> Tracks:
    """Each view's training and validation cines (at most `max_train` per split) and its test cines (`max_test` of
    each split in `eval_splits`), with their tracks by annotation (observer 1 conventions A and B), the second
    observer's and the true test tracks."""
    cines = {v: {s: load_cines(store, v, s, max_train) for s in ("train", "valid")} for v in views}
    for v in views:
        cines[v]["test"] = [c for s in eval_splits for c in load_cines(store, v, s, max_test)]
    tracks = {k: {v: {s: tracks_from_cines(cs, k) for s, cs in by.items()} for v, by in cines.items()}
              for k in ("obsA", "obsB")}
    obs = {k: {v: [c.landmarks[k] for c in cines[v]["test"]] for v in views} for k in ("obsA2", "truth")}
    return Tracks(cines, tracks, obs, {v: tracks["obsA"][v]["test"] for v in views})


def convention_tracks(view: str, name: str, data: Tracks, seed: int) -> tuple[list[Track], list[Track]]:
    """A view's training and validation tracks of annotation convention `name`: observer 1's A or B, or "mixed"
    (each cine's convention drawn from `seed`)."""
    if name == "mixed":
        by = data.cines[view]
        return tuple(mixed_tracks(by[s], seed=seed_for(seed, "mixed", s)) for s in ("train", "valid"))
    return tuple(data.tracks["obsA" if name == "A" else "obsB"][view][s] for s in ("train", "valid"))

