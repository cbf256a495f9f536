"""HeartMAE's inputs: every chosen cine of a subject as square 8-bit frames, its optical-flow weight map, clips.

Each cine (a SAX slice, a 2CH or a 4CH) is resampled to `cycle` frames over its cardiac cycle (UK Biobank has 50),
cropped to a square (the centred one, or `heart_mm` round the moving heart), resized to `load` px (the paper's 256
before 224 crops) and max-scaled to [0, 1], kept as 8 bits. Its motion map W (eq. 2) is the mean Farneback optical-flow
magnitude between every 5th frame (OpenCV, on those 8-bit frames), Gaussian-smoothed and max-scaled to [0, 1]:
computed once per cine and stored beside the frames. A clip is a `ClipView` (start frame, square crop, flips) applied
to frames and map alike; training draws views at random (`random_view`), inference uses the paper's fixed K x T
views (`inference_views`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from ...measure import resample_cycle
from ...record import Cine
from ...store import CohortStore
from ...utils import load_arrays, save_arrays

VIEWS = ("SAX", "2CH", "3CH", "4CH")
FAILURE_COLUMNS = ["cine_id", "subject", "reason"]


class CineInputError(ValueError):
    """A cine HeartMAE cannot use (too few frames, a blank or non-finite image)."""


# ---------------------------------------------------------------- cines -> frames and motion maps


def sax_slices(n_slices: int, k: int) -> list[int]:
    """`k` SAX slice indices spread evenly over the middle 60 % of the stack (base to apex, both ends left out)."""
    if k >= n_slices:
        return list(range(n_slices))
    return sorted({int(round(q * (n_slices - 1))) for q in np.linspace(0.2, 0.8, k)})


def square_frames(pixels: np.ndarray, load: int, box: tuple[int, int, int] | None = None) -> np.ndarray:
    """(T, H, W) -> (T, load, load) uint8: the centred square (or `box`: top, left, side px, zero-padded where it
    leaves the image), resized (area), max-scaled to 0..255."""
    t, h, w = pixels.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    if box is None:
        sq = np.asarray(pixels[:, y0:y0 + s, x0:x0 + s], dtype=np.float32)
    else:
        (y0, x0, s), sq = box, np.zeros((t, box[2], box[2]), np.float32)
        ys, xs = slice(max(y0, 0), min(y0 + s, h)), slice(max(x0, 0), min(x0 + s, w))
        sq[:, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = pixels[:, ys, xs]
    top = float(sq.max())
    if not np.isfinite(top) or top <= 0:
        raise CineInputError("blank or non-finite image")
    interp = cv2.INTER_AREA if s > load else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(f, (load, load), interpolation=interp) for f in sq / top])
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def flow_weight(frames: np.ndarray, sigma_px: float, step: int = 5, still_px: float = 0.05) -> np.ndarray:
    """HeartMAE's W: mean Farneback flow magnitude between frames 0, 5, 10, ... (8-bit input), Gaussian-smoothed
    with `sigma_px`, max-scaled to [0, 1]; all zeros for a still cine (under `still_px` of flow anywhere), whose
    scaled noise would otherwise weight pixels at random."""
    idx = list(range(0, len(frames), step))
    if len(idx) < 2:
        raise CineInputError(f"{len(frames)} frames: optical flow needs frames {step} apart")
    mags = []
    for a, b in zip(idx[:-1], idx[1:]):
        flow = cv2.calcOpticalFlowFarneback(frames[a], frames[b], None, 0.5, 3, 15, 3, 5, 1.2, 0)
        mags.append(np.hypot(flow[..., 0], flow[..., 1]))
    w = cv2.GaussianBlur(np.mean(mags, 0).astype(np.float32), (0, 0), sigma_px)
    return w / w.max() if w.max() > still_px else np.zeros_like(w)


def heart_box(frames: np.ndarray, spacing_mm: float, side_mm: float, sigma_mm: float, load: int = 72
              ) -> tuple[int, int, int]:
    """(top, left, side) px of a `side_mm` square centred on where the cine moves most: the centroid of its optical-
    flow map over the whole centred square (the beating heart; no segmentation, so it runs on any cine). A still
    cine keeps the image centre."""
    h, w = frames.shape[1:]
    s = min(h, w)
    sq = square_frames(frames, load)
    mm = s * spacing_mm / load
    m = flow_weight(sq, sigma_mm / mm) ** 2  # squared: the strongest motion leads, faint background motion does not
    yy, xx = np.mgrid[:load, :load] + 0.5
    cy, cx = ((float((m * yy).sum() / m.sum()), float((m * xx).sum() / m.sum())) if m.sum() > 0
              else (load / 2, load / 2))
    side = max(int(round(side_mm / spacing_mm)), 1)
    cy, cx = (h - s) / 2 + cy * s / load, (w - s) / 2 + cx * s / load
    return int(round(cy - side / 2)), int(round(cx - side / 2)), side


def cine_views(cine: Cine, sax_k: int) -> list[tuple[str, np.ndarray]]:
    """(name, (T, H, W) pixels) of every view HeartMAE takes from a cine: `sax_k` SAX slices or the LAX frames."""
    if cine.pixels.ndim == 4:
        return [(f"{cine.cine_id}:{z}", cine.pixels[:, z]) for z in sax_slices(cine.pixels.shape[1], sax_k)]
    return [(cine.cine_id, cine.pixels)]


@dataclass
class CineSet:
    """Preprocessed views of a cohort: frames (N, T, load, load) uint8 and motion maps (N, load, load)."""

    frames: np.ndarray
    weight: np.ndarray
    table: pd.DataFrame                      # view_id, cine_id, subject, view, split: one row per frame stack
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FAILURE_COLUMNS))

    def __len__(self):
        return len(self.frames)

    def take(self, rows) -> "CineSet":
        """The views at positions `rows`."""
        rows = np.asarray(rows, dtype=int)
        return CineSet(self.frames[rows], self.weight[rows], self.table.iloc[rows].reset_index(drop=True),
                       self.failures)

    def rows(self, split: str | Sequence[str]) -> np.ndarray:
        """Positions of the views whose subject is in `split` (one name or several)."""
        splits = [split] if isinstance(split, str) else list(split)
        return np.flatnonzero(self.table["split"].isin(splits).to_numpy())

    def save(self, path: str | Path, settings: dict) -> Path:
        """Atomically to one .npz (+ settings .json), so a later run with the same settings reuses it."""
        tab = {f"t_{c}": np.asarray(self.table[c], dtype=str) for c in self.table}
        fails = {f"f_{c}": np.asarray(self.failures[c], dtype=str) for c in FAILURE_COLUMNS}
        return save_arrays(path, dict(frames=self.frames, weight=self.weight, **tab, **fails), settings)

    @classmethod
    def load(cls, path: str | Path, settings: dict) -> "CineSet | None":
        """The set saved with these settings, else None."""
        got = load_arrays(path, settings)
        if got is None:
            return None
        a = got[0]
        table = pd.DataFrame({k[2:]: a[k] for k in a if k.startswith("t_")})
        fails = pd.DataFrame({c: a[f"f_{c}"] for c in FAILURE_COLUMNS})
        return cls(a["frames"], a["weight"].astype(np.float32), table, fails)


@dataclass(frozen=True)
class ViewSettings:
    """`preprocess_cine`'s settings, declared once: the Study takes them from its parameters (`config_from`; the
    parameter `sax_slices` is `sax_k`), its Predictor carries them beside the encoder."""
    load: int
    cycle: int
    sax_k: int
    sigma_mm: float
    heart_mm: float | None = None


def preprocess_cine(cine: Cine, load: int = 72, cycle: int = 30, sax_k: int = 3, sigma_mm: float = 18.0,
                    heart_mm: float | None = None, min_frames: int = 10) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(view_id, frames (cycle, load, load) uint8, motion map (load, load)) of every view HeartMAE takes from a
    cine. `sigma_mm` is the paper's 10 px at UK Biobank's 1.8 mm, converted to this cine's resized pixels.
    `heart_mm`: a square of that many mm centred on the moving heart (`heart_box`) instead of the whole field of
    view. A cine of fewer than `min_frames` (ACDC's ED/ES pairs) is refused: resampling would invent its motion."""
    if cine.n_frames < min_frames:
        raise CineInputError(f"{cine.n_frames} frames: HeartMAE needs a cine of at least {min_frames}")
    out, spacing = [], float(cine.spacing[-1])
    for vid, px in cine_views(cine, sax_k):
        frames = resample_cycle(px, cycle)
        box = heart_box(frames, spacing, heart_mm, sigma_mm, load) if heart_mm else None
        sq = square_frames(frames, load, box)
        mm = (box[2] if box else min(px.shape[1:])) * spacing / load
        out.append((vid, sq, flow_weight(sq, sigma_mm / mm)))
    return out


def preprocess_store(store: CohortStore, cine_ids: Sequence[str], progress: bool = True, scheduler=None,
                     workers: int = 1, **prep) -> CineSet:
    """`preprocess_cine` on every listed cine (`prep`: its keywords); a cine that cannot be used is recorded with
    its reason and the others go on. scheduler / workers: one Dask task per cine (`cmrlib.dask_tasks`)."""
    splits = store.splits()
    done = store.map(_prepare, cine_ids, kwargs=prep, scheduler=scheduler, workers=workers, desc="optical flow",
                     progress=progress)
    stacks, maps, rows, fails = [], [], [], []
    for cid in cine_ids:
        subject, view, views, reason = done[cid]
        if reason is not None:
            fails.append(dict(cine_id=cid, subject=subject, reason=reason))
        for vid, sq, w in views:
            stacks.append(sq)
            maps.append(w)
            rows.append(dict(view_id=vid, cine_id=cid, subject=subject, view=view, split=splits.get(subject, "")))
    load, cycle = prep.get("load", 72), prep.get("cycle", 30)
    x = np.stack(stacks) if stacks else np.zeros((0, cycle, load, load), np.uint8)
    w = np.stack(maps) if maps else np.zeros((0, load, load), np.float16)
    return CineSet(x, w.astype(np.float32), pd.DataFrame(rows, columns=["view_id", "cine_id", "subject", "view",
                                                                         "split"]),
                   pd.DataFrame(fails, columns=FAILURE_COLUMNS))


def _prepare(cine: Cine, **prep) -> tuple[str, str, list, str | None]:
    """One cine's views and motion maps (float16), or the reason it cannot be used (a task)."""
    try:
        views = [(vid, sq, w.astype(np.float16)) for vid, sq, w in preprocess_cine(cine, **prep)]
    except CineInputError as e:
        return str(cine.subject), cine.view, [], str(e)
    return str(cine.subject), cine.view, views, None


def intensity_stats(cines: CineSet) -> tuple[float, float]:
    """Mean and SD of the [0, 1] pixels of a (training) set: the paper's centring and scaling."""
    x = cines.frames.astype(np.float32) / 255
    return float(x.mean()), float(x.std())


# ---------------------------------------------------------------- clip views


@dataclass(frozen=True)
class ClipView:
    """A deterministic clip: `frames` consecutive frames from `start`, the square (y, x, side) resized to `size`,
    then flipped up-down and/or left-right."""

    start: int
    box: tuple[int, int, int]
    size: int
    frames: int
    flip_ud: bool = False
    flip_lr: bool = False

    def __call__(self, stack: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, L, L) frames and (L, L) map -> (frames, size, size) float and (size, size) float."""
        y, x, s = self.box
        clip = stack[self.start:self.start + self.frames, y:y + s, x:x + s].astype(np.float32)
        w = weight[y:y + s, x:x + s].astype(np.float32)
        if s != self.size:
            clip = np.stack([cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_LINEAR) for f in clip])
            w = cv2.resize(w, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        for flip, axis in ((self.flip_ud, -2), (self.flip_lr, -1)):
            if flip:
                clip, w = np.flip(clip, axis), np.flip(w, axis)
        return np.ascontiguousarray(clip), np.ascontiguousarray(w)


def random_view(n_frames: int, load: int, size: int, frames: int, rng: np.random.Generator,
                min_side: int | None = None) -> ClipView:
    """The paper's augmentation: a random start, a random square of side `min_side`..`load` (224..256 at their
    size) resized to `size`, random vertical and horizontal flips."""
    s = int(rng.integers(min_side or size, load + 1))
    return ClipView(int(rng.integers(0, n_frames - frames + 1)),
                    (int(rng.integers(0, load - s + 1)), int(rng.integers(0, load - s + 1)), s), size, frames,
                    bool(rng.random() < 0.5), bool(rng.random() < 0.5))


def inference_views(n_frames: int, load: int, size: int, frames: int, k: int = 3, t: int = 2) -> list[ClipView]:
    """Multiview inference: `t` clips spread from the first to the last frame x `k` crops left / centre / right."""
    starts = np.linspace(0, n_frames - frames, t).round().astype(int) if t > 1 else [(n_frames - frames) // 2]
    xs = np.linspace(0, load - size, k).round().astype(int) if k > 1 else [(load - size) // 2]
    y = (load - size) // 2
    return [ClipView(int(s), (y, int(x), size), size, frames) for s in starts for x in xs]


class Clips(torch.utils.data.Dataset):
    """Training (random views, `repeats` clips per cine and epoch) or validation (one fixed centre view per cine)
    clips: (clip (1, T, S, S) normalised, motion map (S, S))."""

    def __init__(self, cines: CineSet, size: int, frames: int, mean: float, std: float, train: bool = True,
                 repeats: int = 1, seed: int = 0, min_side: int | None = None):
        self.cines, self.size, self.frames, self.train = cines, size, frames, train
        self.mean, self.std, self.repeats, self.min_side = mean, std, repeats if train else 1, min_side
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.cines) * self.repeats

    def view(self, i: int) -> ClipView:
        """The clip view of item `i`: random in training, the centre of the middle clip otherwise."""
        n, load = self.cines.frames.shape[1], self.cines.frames.shape[-1]
        if self.train:
            return random_view(n, load, self.size, self.frames, self.rng, self.min_side)
        return inference_views(n, load, self.size, self.frames, k=1, t=1)[0]

    def __getitem__(self, i):
        j = i % len(self.cines)
        clip, w = self.view(i)(self.cines.frames[j], self.cines.weight[j])
        x = (clip / 255 - self.mean) / self.std
        return torch.from_numpy(x[None]), torch.from_numpy(w)
