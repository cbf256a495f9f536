"""Sequences from a cohort store and the fastai DataBlock that pads variable-length cines with NaN."""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import numpy as np
import torch
from fastai.data.block import DataBlock, TransformBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import FuncSplitter
from fastai.torch_core import TensorImage
from fastai.vision.augment import RandTransform
from fastprogress.fastprogress import progress_bar

from ...labels import LV
from ...record import Cine
from ...transforms import IntensityAug, SegAffine, fit_affine, normalise
from .curves import label_curve


def mid_slice(cine: Cine) -> int:
    """The mid-ventricular slice of a SAX stack: the middle of the slices where LV is labelled, else the middle one."""
    if not cine.is_stack:
        return 0
    z = cine.pixels.shape[1]
    if cine.labels is not None and cine.labelled is not None and cine.labelled.any():
        lv = (cine.labels[cine.labelled] == LV).any(axis=(0, 2, 3))
        if lv.any():
            zs = np.flatnonzero(lv)
            return int(zs[len(zs) // 2])
    return z // 2


def seq_frames(cine: Cine, size: int, z: int | None = None, norm: str = "zscore", zoom: float = 1.0) -> np.ndarray:
    """(T, size, size) float32 model input: one slice (SAX: mid-ventricular) fitted into a square grid keeping the
    aspect ratio, magnified `zoom` times about the centre (the heart sits near the middle of a cardiac field of
    view, so zoom > 1 spends the pixels on it), then intensity-normalised over the whole sequence (after the
    resampling: the statistics of the model's view, and ten times cheaper than on the full frames)."""
    px = cine.pixels
    if cine.is_stack:
        px = px[:, mid_slice(cine) if z is None else int(z)]
    aff = fit_affine(px.shape[-2:], size)
    return normalise(aff.then(scale=aff.scale * zoom).image(px), norm)


@dataclass
class SeqItem:
    """One prepared sequence: model frames (T, S, S), labelled ED/ES (0-based), its id, view and split."""

    frames: np.ndarray
    ed: int
    es: int
    cine_id: str
    view: str
    split: str = "train"

    @property
    def n_frames(self) -> int:
        return len(self.frames)


def seq_items(store, ids: Sequence[str], size: int, split: str = "train", norm: str = "zscore",
              zoom: float = 1.0) -> list[SeqItem]:
    """Read and prepare the cines `ids` from a `CohortStore` once (training then only touches memory)."""
    out = []
    for cid in progress_bar(list(ids), leave=False):
        c = store.read(cid)
        if c.ed is None or c.es is None:
            raise ValueError(f"{store.root}: cine {cid} has no ED/ES label")
        out.append(SeqItem(seq_frames(c, size, norm=norm, zoom=zoom), int(c.ed), int(c.es), cid, c.view, split))
    return out


def _get_x(it: SeqItem) -> TensorImage:
    return TensorImage(torch.from_numpy(np.ascontiguousarray(it.frames, dtype=np.float32)))


def label_of(delta: float = 3.0, upsilon: float = 1 / 3) -> Callable[[SeqItem], torch.Tensor]:
    """The DataBlock target getter: a sequence's eq. 4 curve with these exponents."""
    return partial(_get_y, delta=delta, upsilon=upsilon)


def _get_y(it: SeqItem, delta: float = 3.0, upsilon: float = 1 / 3) -> torch.Tensor:
    return torch.from_numpy(label_curve(it.n_frames, it.ed, it.es, delta, upsilon))


def _is_valid(it: SeqItem) -> bool:
    return it.split == "valid"


class RollCycle(RandTransform):
    """Start the cycle at a random frame (frames and curve rolled together): the cine may begin at any phase."""

    split_idx, order = 0, 10

    def __init__(self, p: float = 1.0):
        super().__init__(p=p)

    def before_call(self, b, split_idx: int):
        super().before_call(b, split_idx)
        self.shift = random.randrange(len(b[0]))

    def encodes(self, x: torch.Tensor):
        return x.roll(self.shift, 0)


def pad_seqs(samples: list) -> list:  # plain `list`: fasttransform casts to the return annotation
    """Pad every tensor of a batch's samples along time with NaN frames to the longest sequence (NaN = padding)."""
    n = max(len(s[0]) for s in samples)
    pad = lambda t: torch.cat([t, t.new_full((n - len(t), *t.shape[1:]), float("nan"))]) if len(t) < n else t
    return [tuple(pad(t) for t in s) for s in samples]


def dataloaders(items: list[SeqItem], bs: int = 8, aug: bool = True, delta: float = 3.0, upsilon: float = 1 / 3,
             degrees: float = 10.0, seed: int = 0, **kw) -> DataLoaders:
    """DataLoaders of (frames, label curve) over train/valid `SeqItem`s; training adds a random cycle start,
    one random affine per sequence and intensity jitter; batches are NaN-padded (see `pad_seqs`)."""
    tfms = [RollCycle(), SegAffine(degrees=degrees, scale=(0.9, 1.1), translate=0.05, seed=seed),
            IntensityAug(noise=0.05, seed=seed)] if aug else []
    db = DataBlock(blocks=(TransformBlock, TransformBlock), get_x=_get_x, get_y=label_of(delta, upsilon),
                   splitter=FuncSplitter(_is_valid), item_tfms=tfms)
    return db.dataloaders(items, bs=bs, before_batch=pad_seqs, num_workers=0, **kw)
