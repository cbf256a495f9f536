"""Frame-level items from a cohort store and the one segmentation DataBlock every source shares.

A labelled frame (a 2D long-axis frame, or one slice of a SAX stack at one time point) is
normalised per time point, resampled onto the model grid by `FrameGeometry` (an `Affine2D`, so
predictions map back exactly) and kept in memory; `seg_dls` wraps the items in a fastai
`DataBlock` (image -> `MaskBlock` of the canonical labels) with cmrlib augmentation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from fastai.data.block import DataBlock, TransformBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import FuncSplitter, IntToFloatTensor, ItemGetter
from fastai.torch_core import TensorImage
from fastai.vision.data import MaskBlock
from fastprogress.fastprogress import progress_bar

from .labels import CODES
from .record import Cine
from .store import CohortStore
from .transforms import (Affine2D, ClutterAug, HeartCrop, IntensityAug, LabelIntensityAug, SegAffine, WallAug,
                         fit_affine, normalise)
from .utils import rng, seed_for, seeded
from .modelfile import record

__all__ = ["FrameGeometry", "FrameSet", "cine_frames", "cine_frame_set", "frame_items", "seg_block", "seg_dls",
           "pick_subjects", "CODES", "to_image"]



@record
@dataclass(frozen=True)
class FrameGeometry:
    """How frames reach a model: output grid side, pixel spacing in mm (None: fit the frame) and normalisation."""

    size: int = 128
    spacing: float | None = 1.5
    norm: str = "zscore"

    def affine(self, cine: Cine, centre: tuple[float, float] | None = None) -> Affine2D:
        """The base map from this cine's frame grid to the model grid (crop/pad at `spacing` round the frame's centre,
        or round `centre`, (x, y) in the cine's pixels)."""
        return fit_affine(cine.pixels.shape[-2:], self.size, cine.spacing[-2:], self.spacing, center=centre)


def cine_frames(cine: Cine, geom: FrameGeometry, frames: Sequence[int] | None = None,
                with_labels: bool = True) -> tuple[np.ndarray, np.ndarray | None, Affine2D]:
    """Normalised, resampled frames (F, [Z,] S, S) of a cine, its labels on the same grid and the map used."""
    aff = geom.affine(cine)
    idx = range(cine.n_frames) if frames is None else frames
    xs = np.stack([aff.image(normalise(cine.pixels[t], geom.norm)) for t in idx])
    ys = None
    if with_labels and cine.labels is not None:
        ys = np.stack([aff.mask(cine.labels[t]) for t in idx])
    return xs, ys, aff


@dataclass
class FrameSet:
    """Labelled 2D frames on the model grid: x (N,S,S) float32, y (N,S,S) uint8, one `info` row per frame."""

    x: np.ndarray
    y: np.ndarray
    info: pd.DataFrame
    geometry: FrameGeometry

    def __len__(self):
        return len(self.x)

    def subset(self, keep: np.ndarray) -> "FrameSet":
        """The frames at integer positions or a boolean mask `keep`."""
        keep = np.asarray(keep)
        return FrameSet(self.x[keep], self.y[keep], self.info.iloc[keep].reset_index(drop=True), self.geometry)


def _as_store(source: CohortStore | str | Path) -> CohortStore:
    return source if isinstance(source, CohortStore) else CohortStore(source)


def _pick_frames(labelled: np.ndarray, ed: int | None, es: int | None, frame_step: int) -> list[int]:
    """Labelled frames to use: every `frame_step`-th one, always with ED and ES when labelled."""
    lab = np.flatnonzero(labelled)
    keep = set(lab[::max(1, frame_step)].tolist())
    keep |= {i for i in (ed, es) if i is not None and i < len(labelled) and labelled[i]}
    return sorted(keep)


def _select(store: CohortStore, views: Sequence[str], splits: str | Sequence[str] | None,
            subjects: Sequence[str] | None) -> pd.DataFrame:
    m = store.manifest()
    m = m[m["cine_id"].isin(store.select(list(views), splits))]  # manifest order: frames keep their draw order
    if subjects is not None:
        m = m[m["subject"].astype(str).isin([str(s) for s in subjects])]
    return m


def _add_frames(cine: Cine, idx: Sequence[int], split: str, geometry: FrameGeometry, xs: list, ys: list, rows: list,
                ed: int | None, es: int | None, pick: Sequence[int] | None = None) -> None:
    """Append a cine's frames `pick` (None: all, a cine read as the original's frames `idx`) on the model grid to
    xs / ys, SAX slices each their own 2D frame, with one `info` row each naming the original frame."""
    x, y, _ = cine_frames(cine, geometry, pick)
    if not cine.is_stack:  # a long-axis frame is a one-slice stack
        x, y = x[:, None], y[:, None]
    for j, t in enumerate(idx):
        for z in range(x.shape[1]):
            xs.append(x[j, z])
            ys.append(y[j, z])
            rows.append(dict(cine_id=cine.cine_id, subject=str(cine.subject), view=cine.view, split=split, frame=t,
                             slice=z, is_ed=t == ed, is_es=t == es))


def frame_items(source: CohortStore | str | Path, views: Sequence[str] = ("SAX",),
                splits: str | Sequence[str] | None = "train", geometry: FrameGeometry = FrameGeometry(),
                subjects: Sequence[str] | None = None, frame_step: int = 1, progress: bool = True) -> FrameSet:
    """All labelled frames (SAX slices as 2D frames) of the chosen views/splits/subjects, on the model grid."""
    store = _as_store(source)
    m = _select(store, views, splits, subjects)
    if m.empty:
        raise ValueError(f"{store.root}: no cines of views {list(views)} in splits {splits!r}"
                         + (f" for the {len(subjects)} subjects asked" if subjects is not None else ""))
    xs, ys, rows = [], [], []
    for r in progress_bar(list(m.itertuples(index=False)), display=progress, leave=False):
        g = store.group(r.cine_id)
        if "labelled" not in set(g.array_keys()):
            continue
        a = dict(g.attrs)
        idx = _pick_frames(np.asarray(g["labelled"][:]).astype(bool), a.get("ed"), a.get("es"), frame_step)
        if not idx:
            continue
        _add_frames(store.read(r.cine_id, frames=idx), idx, r.split, geometry, xs, ys, rows, a.get("ed"), a.get("es"))
    if not xs:
        raise ValueError(f"{store.root}: the selected cines of views {list(views)} carry no labelled frames")
    return FrameSet(np.stack(xs).astype(np.float32), np.stack(ys).astype(np.uint8), pd.DataFrame(rows), geometry)


def cine_frame_set(cines: Sequence[Cine], geometry: FrameGeometry = FrameGeometry()) -> FrameSet:
    """Every labelled frame of cines held in memory (real cines read with their own labels, outside a store; SAX
    slices each their own frame) on the model grid: the extra training frames `seg_dls` joins to a store's."""
    xs, ys, rows = [], [], []
    for c in cines:
        if c.labels is None:
            raise ValueError(f"{c.cine_id}: extra training frames need a labelled cine")
        idx = np.flatnonzero(c.labelled).tolist()
        _add_frames(c, idx, "train", geometry, xs, ys, rows, c.ed, c.es, pick=idx)
    if not rows:
        raise ValueError("no labelled frames in the extra cines")
    return FrameSet(np.stack(xs).astype(np.float32), np.stack(ys).astype(np.uint8), pd.DataFrame(rows), geometry)


def _with_extra(tr: FrameSet, extra: FrameSet, share: float) -> FrameSet:
    """Training frames plus `extra` frames cycled until they are `share` of the whole (a few real frames among
    many phantom ones would otherwise barely move the loss)."""
    n = max(len(extra), int(round(share * len(tr) / (1 - share))))
    idx = np.resize(np.arange(len(extra)), n)
    info = pd.concat([tr.info, extra.info.iloc[idx]], ignore_index=True)
    return FrameSet(np.concatenate([tr.x, extra.x[idx]]), np.concatenate([tr.y, extra.y[idx]]), info, tr.geometry)


def _cap(fs: FrameSet, n: int, seed: int) -> FrameSet:
    """At most n frames of a set (a seeded random subset, kept in order)."""
    return fs if len(fs) <= n else fs.subset(np.sort(rng(seed).choice(len(fs), n, replace=False)))


def to_image(a: np.ndarray) -> TensorImage:
    """A (H, W) float frame as a 1-channel fastai image tensor."""
    return TensorImage(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None])


def seg_block(aug: dict | None = None, intensity: dict | None = None, clutter: dict | list[dict] | None = None,
              seed: int = 0, label_intensity: dict | None = None, wall: dict | None = None,
              crop: dict | None = None) -> DataBlock:
    """The segmentation DataBlock: (frame, labels, is_valid) items -> image, canonical `MaskBlock`, cmrlib augmentation
    (keyword arguments of `SegAffine`, `IntensityAug`, `LabelIntensityAug`, `WallAug`, `ClutterAug` or a list of
    them, and `HeartCrop` for training windows smaller than the canvas; None leaves one out)."""
    clutters = [] if clutter is None else [clutter] if isinstance(clutter, dict) else list(clutter)
    chosen = ((SegAffine, aug), (IntensityAug, intensity), (LabelIntensityAug, label_intensity), (WallAug, wall),
              *((ClutterAug, kw) for kw in clutters), (HeartCrop, crop))
    item_tfms = [tfm(**kw, seed=seed) for tfm, kw in chosen if kw is not None]
    return DataBlock(blocks=(TransformBlock(type_tfms=to_image), MaskBlock(codes=CODES)),
                     get_x=ItemGetter(0), get_y=ItemGetter(1), splitter=FuncSplitter(ItemGetter(2)),
                     item_tfms=item_tfms,
                     batch_tfms=[IntToFloatTensor(div=1.0)])  # images are already normalised floats


def seg_dls(source: CohortStore | str | Path, views: Sequence[str] = ("SAX",), size: int = 128,
            bs: int = 16, seed: int = 0, spacing: float | None = 1.5, norm: str = "zscore",
            train: str | Sequence[str] = "train", valid: str | Sequence[str] | None = "valid",
            subjects: Sequence[str] | None = None, frame_step: int = 1, max_frames: int | None = None,
            valid_frac: float = 0.2, aug: dict | None = None, intensity: dict | None = None,
            clutter: dict | list[dict] | None = None, label_intensity: dict | None = None, wall: dict | None = None,
            crop: dict | None = None, extra: Sequence[Cine] = (), extra_share: float = 0.25,
            progress: bool = True) -> DataLoaders:
    """Segmentation DataLoaders from a cohort store; the geometry rides along as `dls.geometry`.

    `subjects` restricts the training subjects (e.g. fine-tuning on 10 patients); `max_frames` caps the training
    frames, and a quarter of it the validation frames (seeded random subsets, for large cohorts on a CPU budget);
    when the store has
    no `valid` cines (or `valid=None`), a seeded `valid_frac` of the training subjects is held out.
    `aug` / `intensity` / `clutter` / `label_intensity` / `wall` / `crop` are keyword arguments of `SegAffine` /
    `IntensityAug` / `ClutterAug` (or a list of them) / `LabelIntensityAug` / `WallAug` / `HeartCrop` (None: off;
    `crop` makes the training frames a window round the heart, validation frames stay whole).
    `extra`: labelled cines outside the store (real frames with their own labels) whose every labelled frame joins
    the training set, cycled to `extra_share` of it; never validation.
    """
    with seeded(seed):  # the loaders' shuffling draws from it
        geom = FrameGeometry(size=size, spacing=spacing, norm=norm)
        if size % 32:
            raise ValueError(f"seg_dls: size must be a multiple of 32 for the U-Net, got {size}")
        store = _as_store(source)
        tr = frame_items(store, views, train, geom, subjects, frame_step, progress)
        va = None
        if valid is not None and not _select(store, views, valid, None).empty:
            va = frame_items(store, views, valid, geom, None, frame_step, progress)
        else:  # hold out a seeded fraction of the training subjects
            subs = np.array(sorted(tr.info["subject"].unique()))
            n_va = max(1, int(round(valid_frac * len(subs)))) if len(subs) > 1 else 0
            held = set(rng(seed_for(seed, "seg_dls", "held-out subjects")).permutation(subs)[:n_va].tolist())
            is_va = tr.info["subject"].isin(held).to_numpy()
            tr, va = tr.subset(~is_va), (tr.subset(is_va) if is_va.any() else tr.subset(np.zeros(len(tr), bool)))
        if max_frames is not None:
            tr = _cap(tr, max_frames, seed_for(seed, "seg_dls", "train frames"))
            va = _cap(va, max(1, max_frames // 4), seed_for(seed, "seg_dls", "valid frames"))
        if extra:
            tr = _with_extra(tr, cine_frame_set(extra, geom), extra_share)
        return _loaders(seg_block(aug, intensity, clutter, seed, label_intensity, wall, crop), tr, va, geom, views,
                        bs)


def cine_dls(cines: Sequence[Cine], geometry: FrameGeometry, bs: int = 16, seed: int = 0, aug: dict | None = None,
             intensity: dict | None = None) -> DataLoaders:
    """Segmentation DataLoaders over every labelled frame of cines held in memory (a site's own contours, for
    fine-tuning a trained segmenter at its geometry): all of them train and none validates, since no choice is
    made on them."""
    with seeded(seed):
        return _loaders(seg_block(aug, intensity, seed=seed), cine_frame_set(cines, geometry), None, geometry,
                        sorted({c.view for c in cines}), bs)


def _loaders(block, tr, va, geometry: FrameGeometry, views: Sequence[str], bs: int) -> DataLoaders:
    """The DataLoaders of a training and (None: no) validation frame set, with the geometry, views, vocabulary and
    each frame's info (its role) riding along."""
    sets = [(tr, False)] + ([(va, True)] if va is not None else [])
    items = [(x, y, is_valid) for fs, is_valid in sets for x, y in zip(fs.x, fs.y)]
    dls = block.dataloaders(items, bs=bs, num_workers=0, verbose=False)
    dls.geometry, dls.views, dls.vocab = geometry, tuple(views), CODES
    dls.info = pd.concat([fs.info.assign(role="valid" if v else "train") for fs, v in sets], ignore_index=True)
    return dls


def pick_subjects(source: CohortStore | str | Path, n: int, split: str = "train", by: str = "group",
                  seed: int = 0) -> list[str]:
    """`n` subjects of a split spread evenly over the strata of manifest column `by` (seeded round robin)."""
    m = _as_store(source).manifest()
    m = m[m["split"] == split].drop_duplicates("subject")
    col = m[by].astype(str) if by in m else pd.Series("all", index=m.index)
    g = rng(seed)
    pools = [list(g.permutation(sorted(m.loc[col == k, "subject"].astype(str)))) for k in sorted(col.unique())]
    out = []
    while len(out) < n and any(pools):
        for p in pools:
            if p and len(out) < n:
                out.append(str(p.pop(0)))
    return out
