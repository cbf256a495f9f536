"""ED/ES frame detection by temporal regression (TempReg-Net, Kong et al., MICCAI 2016).

A network regresses, frame by frame, a synthetic volume-like curve built from the labelled ED and ES (eq. 4 of the
paper): 1 at ED, 0 at ES, falling as ((ES - t) / systole)^delta through systole and rising as
((t - ES) / diastole)^upsilon through diastole. ED and ES are then the arg-max and arg-min of the predicted curve.
Everything here is cyclic: a cine holds one cardiac cycle that may start at any phase (the paper's start at ED is
not assumed), frame differences are cyclic distances, and the structured loss also compares the last frame with
the first.

Pieces: the label curve, the temporal structured loss (eq. 2) and `TempRegLoss`, decoding, a fastai sequence
DataBlock that pads variable-length cines with NaN (the loss and the model mask them out), learners for
TempReg-Net and its baselines, end-to-end detection on a `Cine`, and the aFD table of the paper's Table 1.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from functools import partial
from itertools import zip_longest
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
import torch
import torch.nn.functional as F
from fastai.data.block import DataBlock, TransformBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import FuncSplitter
from fastai.learner import Learner
from fastai.optimizer import Adam
from fastai.torch_core import TensorImage
from fastai.vision.augment import RandTransform
from fastprogress.fastprogress import progress_bar
from scipy.ndimage import uniform_filter1d

from .labels import LV
from .models.tempreg import tempreg_net
from .record import Cine
from .transforms import IntensityAug, SegAffine, fit_affine, normalise

__all__ = ["label_curve", "frame_diff", "decode", "tsc_loss", "TempRegLoss", "afd_ed", "afd_es", "mid_slice",
           "seq_frames", "SeqItem", "seq_items", "RollCycle", "pad_seqs", "edes_dls", "edes_learner",
           "METHODS", "predict_curve", "detect", "evaluate", "afd_table", "label_of", "split_ids",
           "seg_detect", "curves_figure", "afd_figure", "plateau", "label_plateaus"]


# ---- label curve, frame distance, decoding -------------------------------------------------------
def label_curve(n: int, ed: int, es: int, delta: float = 3.0, upsilon: float = 1 / 3) -> np.ndarray:
    """The paper's eq. 4 volume-like target for a cycle of `n` frames starting at any phase (0-based ED, ES).

    Systole runs forward from ED to ES (wrapping past the last frame), diastole from ES to the next ED; each is
    normalised by its own length so the curve is 1 exactly at ED and 0 exactly at ES."""
    ed, es = int(ed) % n, int(es) % n
    if ed == es:
        raise ValueError(f"label_curve: ED and ES are the same frame ({ed})")
    sys_len = (es - ed) % n
    a = (np.arange(n) - ed) % n  # frames since ED
    sys = np.clip((sys_len - a) / sys_len, 0, 1) ** delta
    dia = np.clip((a - sys_len) / (n - sys_len), 0, 1) ** upsilon
    return np.where(a <= sys_len, sys, dia).astype(np.float32)


def frame_diff(pred, true, n) -> np.ndarray:
    """Cyclic frame distance |pred - true| on a cycle of n frames (frame 0 and frame n-1 are neighbours)."""
    d = np.abs(np.asarray(pred) - np.asarray(true)) % np.asarray(n)
    return np.minimum(d, np.asarray(n) - d)


def decode(curve: np.ndarray, smooth: int = 1) -> tuple[int, int]:
    """ED = arg-max, ES = arg-min of a predicted cycle, after an optional circular moving average of `smooth` frames.

    The smoothing wraps around, so a peak that straddles the last and first frames is found where it is."""
    c = np.asarray(curve, dtype=np.float64)
    if smooth > 1:
        c = uniform_filter1d(c, size=int(smooth), mode="wrap")
    return int(np.argmax(c)), int(np.argmin(c))


# ---- losses and metrics (NaN-padded targets mark padded frames) ----------------------------------------
def _cyclic_pairs(mask: torch.Tensor, cyclic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of each frame's successor (the last real frame's is frame 0 when cyclic) and which pairs count."""
    b, t = mask.shape
    lengths = mask.sum(1, keepdim=True)
    idx = torch.arange(t, device=mask.device).expand(b, t)
    last = idx + 1 >= lengths
    nxt = torch.where(last, torch.zeros_like(idx), idx + 1)
    return nxt, mask & (~last | cyclic) & (lengths > 1)


def tsc_loss(pred: torch.Tensor, targ: torch.Tensor, mask: torch.Tensor | None = None,
             cyclic: bool = True) -> torch.Tensor:
    """Temporal structured loss (eq. 2): the mean hinge on consecutive predicted differences whose sign disagrees
    with the label curve's (the prediction falls where the label rises, or rises where it falls)."""
    if mask is None:
        mask = ~torch.isnan(targ)
    y = torch.nan_to_num(targ)
    nxt, ok = _cyclic_pairs(mask, cyclic)
    dp = pred.gather(1, nxt) - pred
    dy = y.gather(1, nxt) - y
    pen = F.relu(-torch.sign(dy) * dp)
    return (pen * ok).sum() / ok.sum().clamp(min=1)


class TempRegLoss:
    """MSE on the real frames + beta * temporal structured loss (alpha * L2 is the optimiser's weight decay)."""

    def __init__(self, beta: float = 1.0, cyclic: bool = True):
        self.beta, self.cyclic = float(beta), cyclic

    def __call__(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        mask = ~torch.isnan(targ)
        mse = ((pred - torch.nan_to_num(targ)) ** 2 * mask).sum() / mask.sum().clamp(min=1)
        if self.beta == 0:
            return mse
        return mse + self.beta * tsc_loss(pred, targ, mask, self.cyclic)

    def __repr__(self):
        return f"TempRegLoss(beta={self.beta}, cyclic={self.cyclic})"


def _batch_fd(pred: torch.Tensor, targ: torch.Tensor, which: int) -> torch.Tensor:
    """Mean cyclic frame difference of ED (which=0) or ES (which=1) over the sequences of a padded batch."""
    out = []
    for p, y in zip(pred.detach().cpu().numpy(), targ.detach().cpu().numpy()):
        n = int((~np.isnan(y)).sum())
        out.append(frame_diff(decode(p[:n])[which], decode(y[:n])[which], n))
    return torch.tensor(float(np.mean(out)))


def afd_ed(pred, targ):
    """Validation metric: mean absolute (cyclic) ED frame difference."""
    return _batch_fd(pred, targ, 0)


def afd_es(pred, targ):
    """Validation metric: mean absolute (cyclic) ES frame difference."""
    return _batch_fd(pred, targ, 1)


# ---- frames from a cine --------------------------------------------------------------------------------
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


def split_ids(store, split: str, views: Sequence[str], max_cines: int | None = None) -> list[str]:
    """Cine ids of one split, at most `max_cines` per view, interleaved across views (view 1, view 2, ... repeat)."""
    per_view = [store.select(view=v, split=split)[:max_cines] for v in views]
    return [i for grp in zip_longest(*per_view) for i in grp if i is not None]


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


# ---- fastai sequence DataBlock ----------------------------------------------------------------------------
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


def edes_dls(items: list[SeqItem], bs: int = 8, aug: bool = True, delta: float = 3.0, upsilon: float = 1 / 3,
             degrees: float = 10.0, seed: int = 0, **kw) -> DataLoaders:
    """DataLoaders of (frames, label curve) over train/valid `SeqItem`s; training adds a random cycle start,
    one random affine per sequence and intensity jitter; batches are NaN-padded (see `pad_seqs`)."""
    tfms = [RollCycle(), SegAffine(degrees=degrees, scale=(0.9, 1.1), translate=0.05, seed=seed),
            IntensityAug(noise=0.05, seed=seed)] if aug else []
    db = DataBlock(blocks=(TransformBlock, TransformBlock), get_x=_get_x, get_y=label_of(delta, upsilon),
                   splitter=FuncSplitter(_is_valid), item_tfms=tfms)
    return db.dataloaders(items, bs=bs, before_batch=pad_seqs, num_workers=0, **kw)


# ---- learners for TempReg-Net and the baselines ------------------------------------------------------------
METHODS = {  # name -> (model kind, use the temporal structured loss)
    "CNN+Reg": ("cnnreg", False),
    "TempReg-Net w/o TSC": ("tempreg", False),
    "TempReg-Net": ("tempreg", True),
}


def edes_learner(dls: DataLoaders, method: str = "TempReg-Net", beta: float = 1.0, alpha: float = 1e-4,
                 path: str | Path = ".", **model_kw) -> Learner:
    """A fastai Learner for one method of `METHODS`: MSE (+ beta * TSC) with alpha as a true L2 penalty.

    `Adam(decouple_wd=False)` adds alpha * w to every gradient, i.e. the gradient of the paper's
    (alpha / 2) * ||w||^2 loss term, rather than AdamW's decoupled decay; BatchNorm and bias are not decayed."""
    if method not in METHODS:
        raise ValueError(f"unknown ED/ES method {method!r}; expected one of {list(METHODS)}")
    kind, tsc = METHODS[method]
    return Learner(dls, tempreg_net(kind, **model_kw), loss_func=TempRegLoss(beta if tsc else 0.0),
                   opt_func=partial(Adam, decouple_wd=False), wd=alpha, metrics=[afd_ed, afd_es], path=path)


# ---- inference and evaluation --------------------------------------------------------------------------------
@torch.no_grad()
def predict_curve(model: torch.nn.Module, frames: np.ndarray) -> np.ndarray:
    """The predicted curve (T,) for one prepared (T, S, S) sequence."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[None]
    return model(x.to(next(model.parameters()).device))[0].float().cpu().numpy()


def detect(model: torch.nn.Module, cine: Cine, size: int, zoom: float = 1.0, z: int | None = None,
           smooth: int = 1) -> dict:
    """End to end on a `Cine`: frames -> predicted curve -> ED/ES (0-based)."""
    curve = predict_curve(model, seq_frames(cine, size, z, zoom=zoom))
    ed, es = decode(curve, smooth)
    return dict(curve=curve, ed=ed, es=es)


def seg_detect(segmenters: dict, cine: Cine) -> dict:
    """Baseline 1: ED = max, ES = min of the segmented LV blood-pool volume (SAX stack) or area (long axis) curve."""
    from .measure import ed_es_from_curve, volume_curve
    from .segment import predict
    labels = predict(segmenters["SAX" if cine.view == "SAX" else "LAX"], cine)
    curve = volume_curve(labels, cine.spacing, LV)
    ed, es = ed_es_from_curve(curve)
    return dict(curve=curve, ed=ed, es=es)


def evaluate(detectors: dict[str, Callable[[Cine], dict]], cines: Iterable[Cine], total: int | None = None,
             keep_curves: int = 0) -> pd.DataFrame:
    """Run every detector `fn(cine) -> {ed, es, curve}` on each labelled cine (read once): one row per cine and
    method with cyclic frame differences and the seconds the detector took (wall clock, from the record).

    The first `keep_curves` cines keep their predicted curves (column `curve`) for figures. Each detector runs once
    untimed on the first cine first, so one-off warm-up costs do not land in the seconds per sequence."""
    rows = []
    for i, c in enumerate(progress_bar(cines, total=total, leave=False)):
        for name, fn in detectors.items():
            if i == 0:
                fn(c)
            t0 = time.perf_counter()
            r = fn(c)
            sec = time.perf_counter() - t0
            row = dict(method=name, cine_id=c.cine_id, view=c.view, n_frames=c.n_frames, ed=c.ed, es=c.es,
                       ed_pred=r["ed"], es_pred=r["es"], sec=sec)
            if c.ed is not None and c.es is not None:
                row.update(fd_ed=int(frame_diff(r["ed"], c.ed, c.n_frames)),
                           fd_es=int(frame_diff(r["es"], c.es, c.n_frames)))
            if i < keep_curves:
                row.update(curve=np.asarray(r["curve"], dtype=np.float32))
            rows.append(row)
    return pd.DataFrame(rows)


def plateau(curve, i: int, tol: float = 0.005) -> int:
    """How many frames of a volume curve lie within `tol` (relative) of its value at frame i: more than one or two
    means the extremum at i is shared by visually identical frames, so a label there is ambiguous."""
    c = np.asarray(curve, dtype=float)
    return int((np.abs(c - c[i]) <= tol * abs(c[i])).sum())


def label_plateaus(store, ids: Sequence[str], tol: float = 0.005) -> pd.DataFrame:
    """Per cine, the width of the ED and ES volume plateaus of the phantom's true LV volume curve
    (`meta['lv_volume_curve_ml']`; NaN for cines without one)."""
    rows = []
    for cid in ids:
        a = store.attrs(cid)
        v = (a.get("meta") or {}).get("lv_volume_curve_ml")
        ok = v is not None and a.get("ed") is not None and a.get("es") is not None
        rows.append(dict(cine_id=cid, ed_plateau=plateau(v, a["ed"], tol) if ok else np.nan,
                         es_plateau=plateau(v, a["es"], tol) if ok else np.nan))
    return pd.DataFrame(rows)


def afd_table(df: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's Table 1: aFD and SD (frames) for ED and ES and seconds per sequence, per method and view + 'all'."""
    both = pd.concat([df, df.assign(view="all")])
    t = both.groupby(["method", "view"], sort=False).agg(
        n=("fd_ed", "size"), aFD_ED=("fd_ed", "mean"), SD_ED=("fd_ed", "std"), aFD_ES=("fd_es", "mean"),
        SD_ES=("fd_es", "std"), sec_per_seq=("sec", "mean")).reset_index()
    if order is not None:
        t["method"] = pd.Categorical(t["method"], [m for m in order if m in set(t["method"])], ordered=True)
        t = t.sort_values(["method", "view"]).reset_index(drop=True)
    return t


# ---- figures ---------------------------------------------------------------------------------------------------
def _scaled(c: np.ndarray) -> np.ndarray:
    """Min-max scale a curve to [0, 1] so volumes (mL), areas and regressed curves share one axis."""
    c = np.asarray(c, dtype=float)
    return (c - c.min()) / max(float(np.ptp(c)), 1e-9)


def curves_figure(df: pd.DataFrame, n: int = 4, delta: float = 3.0, upsilon: float = 1 / 3,
                  mark_method: str | None = None, title: str = "test cine"):
    """Predicted (scaled) vs label curves for the first `n` cines that kept curves (see `evaluate(keep_curves=)`),
    with the true ED/ES when known and the frames `mark_method` picked."""
    import matplotlib.pyplot as plt

    from .plots import curve_plot
    kept = df[df["curve"].notna()] if "curve" in df else df.iloc[:0]
    ids = list(dict.fromkeys(kept["cine_id"]))[:n]
    fig, axes = plt.subplots(1, max(len(ids), 1), figsize=(4.2 * max(len(ids), 1), 3.2), squeeze=False)
    for k, (ax, cid) in enumerate(zip(axes[0], ids)):
        g = kept[kept["cine_id"] == cid]
        r = g.iloc[0]
        curves = {}
        if not pd.isna(r["ed"]):
            curves["label (eq. 4)"] = label_curve(r["n_frames"], r["ed"], r["es"], delta, upsilon)
        curves.update({m: _scaled(c) for m, c in zip(g["method"], g["curve"])})
        marks = {} if pd.isna(r["ed"]) else {"ED true": r["ed"], "ES true": r["es"]}
        if mark_method is not None and mark_method in set(g["method"]):
            p = g[g["method"] == mark_method].iloc[0]
            marks.update({f"ED {mark_method}": p["ed_pred"], f"ES {mark_method}": p["es_pred"]})
        curve_plot(ax, curves, marks=marks, ylabel="curve (scaled to [0, 1])" if k == 0 else "",
                   title=f"{title} {k + 1} ({r['view']}, {r['n_frames']} frames)")
    fig.tight_layout()
    return fig


def afd_figure(table: pd.DataFrame):
    """Bar chart of aFD per view and method (whiskers: SD, clipped at 0), ED and ES side by side."""
    import matplotlib.pyplot as plt
    methods, views = list(dict.fromkeys(table["method"])), list(dict.fromkeys(table["view"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    w = 0.8 / max(len(methods), 1)
    for ax, ph in zip(axes, ("ED", "ES")):
        for j, m in enumerate(methods):
            t = table[table["method"] == m].set_index("view").reindex(views)
            mean, sd = t[f"aFD_{ph}"].to_numpy(float), t[f"SD_{ph}"].fillna(0).to_numpy(float)
            ax.bar(np.arange(len(views)) + (j - (len(methods) - 1) / 2) * w, mean, w, label=m,
                   yerr=[np.minimum(sd, mean), sd], capsize=2)
        ax.set_xticks(np.arange(len(views)), views)
        ax.set_title(f"{ph}: mean absolute frame difference", fontsize=10)
    axes[0].set_ylabel("aFD (frames)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig
