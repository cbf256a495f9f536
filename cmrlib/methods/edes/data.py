"""Sequences from a cohort store and the fastai DataBlock that pads variable-length cines with NaN."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
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
from ...measure import resample_cycle
from ...record import Cine
from ...transforms import IntensityAug, SegAffine, fit_affine, normalise
from .curves import label_curve


def mid_slice(cine: Cine, masks: bool = True) -> int:
    """The mid-ventricular slice of a SAX stack: the middle of the slices where LV is labelled (masks: a training
    cine's), else the middle one (a patient's cine at test: chosen without masks)."""
    if not cine.is_stack:
        return 0
    zs = lv_slices(cine) if masks else []
    return int(zs[len(zs) // 2]) if zs else cine.pixels.shape[1] // 2


def lv_slices(cine: Cine) -> list[int]:
    """The SAX slices where the LV is labelled in any labelled frame (none: an unlabelled cine or a long axis)."""
    if not cine.is_stack or cine.labels is None or cine.labelled is None or not cine.labelled.any():
        return []
    return np.flatnonzero((cine.labels[cine.labelled] == LV).any(axis=(0, 2, 3))).tolist()


@dataclass(frozen=True)
class Reading:
    """How TempReg-Net reads a SAX stack: the curves of `slices` neighbouring mid slices averaged at test (chosen
    without masks), one random LV slice per sequence and epoch in training (`every_slice`; else the mid slice), the
    cycle resampled to `frames` frames and the curve mapped back (None: the cine's own frames)."""

    slices: int = 1
    every_slice: bool = False
    frames: int | None = None


def resampled_index(i: int, n_from: int, n_to: int) -> int:
    """Frame `i` of an `n_from`-frame cycle on the same cycle resampled to `n_to` frames (nearest)."""
    return int(round(i * n_to / n_from)) % n_to


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
    stack: np.ndarray | None = None  # (T, Z, S, S) every LV slice: a training sequence draws one per epoch

    @property
    def n_frames(self) -> int:
        return len(self.frames)


def real_item(cine: Cine, size: int, zoom: float, every_slice: bool = False) -> SeqItem:
    """A labelled real cine prepared for fine-tuning: its mid slice (the validation sequence) and, with
    `every_slice`, every LV slice beside it (a training sequence draws one per epoch)."""
    zs = lv_slices(cine) if every_slice else []
    stack = np.stack([seq_frames(cine, size, z, zoom=zoom) for z in zs], 1) if zs else None
    return SeqItem(seq_frames(cine, size, zoom=zoom), int(cine.ed), int(cine.es), cine.cine_id, cine.view,
                   stack=stack)


def resampled(item: SeqItem, n: int) -> SeqItem:
    """A prepared sequence on the same cycle at `n` frames (`measure.resample_cycle`), ED and ES mapped."""
    m = item.n_frames
    return replace(item, frames=resample_cycle(item.frames, n), ed=resampled_index(item.ed, m, n),
                   es=resampled_index(item.es, m, n),
                   stack=None if item.stack is None else resample_cycle(item.stack, n))


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


@dataclass(frozen=True)
class Sequences:
    """The training and validation sequences and their loaders, the test cines, and what preparing them took."""

    items: list[SeqItem]
    dls: object
    test_ids: list[str]
    seconds: float


def phantom_sequences(store, views: list[str], max_cines: int | None, size: int, zoom: float, bs: int, delta: float,
                      upsilon: float, seed: int) -> Sequences:
    """The training and validation sequences of a store's `views` (frames fitted and zoomed, read once) with their
    loaders, and the test cines, interleaved by view."""
    t0 = time.perf_counter()
    items = [it for split in ("train", "valid")
             for it in seq_items(store, store.select(views, split, max_cines, interleave=True), size, split, zoom=zoom)]
    dls = dataloaders(items, bs=bs, delta=delta, upsilon=upsilon, seed=seed)
    return Sequences(items, dls, store.select(views, "test", max_cines, interleave=True), time.perf_counter() - t0)


def _get_x(it: SeqItem) -> TensorImage:
    """The sequence's frames: a training sequence with every slice draws one of them each time it is read."""
    x = it.frames if it.stack is None or it.split != "train" else it.stack[:, random.randrange(it.stack.shape[1])]
    return TensorImage(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))


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
