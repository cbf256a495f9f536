"""Segmentation learner, export/reload, whole-cine inference and Dice / HD95 evaluation.

`seg_learner` builds a fastai `Learner` (TernausNet11, Dice + cross-entropy, per-class Dice
metrics) from `cmrlib.data.seg_dls`; `predict` segments every frame/slice of a `Cine` at the
model's resolution and maps the class scores back onto the cine's own grid.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.callback import progress, schedule  # noqa: F401  (progress bars, Learner.fit_one_cycle)
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat, DiceLoss
from fastai.metrics import DiceMulti
from fastprogress.fastprogress import progress_bar
from scipy import ndimage

from .data import FrameGeometry
from .labels import NAMES
from .learn import CPUBFloat16, bf16_callbacks, cpu_bf16, export, load
from .models import unet11
from .record import Cine
from .store import CohortStore
from .transforms import normalise

__all__ = ["DiceCE", "ClassDice", "CPUBFloat16", "seg_learner", "class_weights", "train_segmenter", "export_segmenter",
           "load_segmenter", "MODEL_FILES", "model_file", "load_segmenters", "as_model", "cpu_bf16", "frame_probs", "log_prior", "decide", "predict",
           "calibrate_prior", "mean_dice", "predict_store", "keep_largest", "dice", "hd95",
           "evaluate", "summarise", "subject_measures", "measure_pairs", "frame_scores", "case_panels", "MODEL_KEYS"]


class DiceCE:
    """Soft Dice + cross-entropy over the class axis (robust to small structures and to class imbalance)."""

    def __init__(self, dice_weight: float = 1.0, axis: int = 1, class_weights: torch.Tensor | None = None):
        self.ce = CrossEntropyLossFlat(axis=axis, weight=class_weights)
        self.dice = DiceLoss(axis=axis, smooth=1.0, reduction="mean")
        self.dice_weight = dice_weight

    def __call__(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        return self.ce(pred, targ) + self.dice_weight * self.dice(pred, targ)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(x, dim=1)

    def decodes(self, x: torch.Tensor) -> torch.Tensor:
        return x.argmax(dim=1)


class ClassDice(DiceMulti):
    """Dice of one canonical label accumulated over the validation set (fastai metric named dice_<label>)."""

    def __init__(self, label: int, axis: int = 1):
        super().__init__(axis)
        self.label = label

    @property
    def name(self) -> str:
        return f"dice_{NAMES[self.label]}"

    @property
    def value(self):
        u = self.union.get(self.label, 0)
        return 2.0 * self.inter.get(self.label, 0) / u if u > 0 else float("nan")


def seg_learner(dls, width: float = 0.25, pretrained: bool = False, bn: bool = True, dice_weight: float = 1.0,
                labels: Sequence[int] | None = None, path: str | Path = ".", bf16: bool = False, balance: bool = False,
                **kwargs) -> Learner:
    """A fastai Learner for a TernausNet11 on `seg_dls` DataLoaders; the data geometry travels on the model.

    bf16: train with CPU bfloat16 autocast (`CPUBFloat16`). balance: weight the cross-entropy by inverse square-root
    class frequency (`class_weights`), so small structures (RA, RV in long axis) are learned early."""
    model = unet11(n_classes=len(NAMES), width=width, pretrained=pretrained, bn=bn)
    model.geometry, model.views = getattr(dls, "geometry", FrameGeometry()), getattr(dls, "views", ())
    counts = _label_counts(dls)
    labels = [k for k in sorted(NAMES) if k and counts[k]] if labels is None else labels  # default: those present
    cbs = list(kwargs.pop("cbs", [])) + bf16_callbacks(bf16)
    loss = DiceCE(dice_weight, class_weights=class_weights(counts) if balance else None)
    return Learner(dls, model, loss_func=loss, metrics=[ClassDice(l) for l in labels],
                   path=Path(path), model_dir=".", cbs=cbs, **kwargs)


def _label_counts(dls) -> np.ndarray:
    """Pixel count per canonical label over the training masks."""
    return sum(np.bincount(y.ravel(), minlength=len(NAMES)) for _, y, _ in dls.train.items)


def class_weights(counts: np.ndarray, cap: float = 10.0) -> torch.Tensor:
    """Inverse square-root frequency weights (mean 1 over the labels present, at most `cap`; absent labels 1)."""
    c = np.asarray(counts, dtype=float)
    w = np.ones_like(c)
    ok = c > 0
    w[ok] = 1.0 / np.sqrt(c[ok] / c[ok].sum())
    w[ok] = np.minimum(w[ok] / w[ok].mean(), cap)
    return torch.tensor(w, dtype=torch.float32)


def export_segmenter(learn: Learner, path: str | Path) -> Path:
    """Export the learner (model, loss, geometry, decision log-prior; no data) atomically for `load_segmenter`."""
    return export(learn, path)


def load_segmenter(path: str | Path) -> Learner:
    """Reload an exported segmenter on the CPU (`predict` takes it directly)."""
    return load(path, "segmenter", "notebook 01")


MODEL_FILES = {"SAX": "seg_sax.pkl", "LAX": "seg_lax.pkl"}  # exported segmenters by kind, in a models folder


def model_file(folder: str | Path, kind: str) -> Path:
    """Where the exported segmenter of a kind ('SAX' or 'LAX': 2CH and 4CH) lives in a models folder."""
    return Path(folder) / MODEL_FILES[kind]


def load_segmenters(folder: str | Path) -> tuple[dict, str | None]:
    """The exported segmenters by kind ('SAX', 'LAX'), and why some are missing (None when all load)."""
    models, missing = {}, []
    for kind in MODEL_FILES:
        p = model_file(folder, kind)
        if p.exists():
            models[kind] = load_segmenter(p)
        else:
            missing.append(str(p))
    return models, (f"no exported segmenter at {', '.join(missing)} (run notebook 01 first)" if missing else None)


def as_model(model) -> torch.nn.Module:
    """The torch module inside a Learner (or the module itself)."""
    return model.model if isinstance(model, Learner) else model


def keep_largest(labels: np.ndarray) -> np.ndarray:
    """Keep each structure's largest connected component (3D over a SAX stack, 2D on a frame); the rest -> background.

    Removes the scattered false positives a model makes on unfamiliar anatomy (as ukbb_cardiac's post-processing does).
    """
    out = np.asarray(labels).copy()
    for lab in np.unique(out):
        if lab == 0:
            continue
        comp, n = ndimage.label(out == lab)
        if n > 1:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            out[(comp > 0) & (comp != sizes.argmax())] = 0
    return out


@torch.inference_mode()
def frame_probs(model, cine: Cine, bs: int = 32, bf16: bool | None = None, frames: Sequence[int] | None = None):
    """Yield (frame, slice) index and softmax class scores (H, W, C) on the cine's own grid, one 2D frame at a time.

    frames: only these time frames (None: all). bf16: CPU bfloat16 autocast with channels-last memory (None: when the
    CPU has native bf16, see `cpu_bf16`). Outside the model's field of view every score is 0."""
    net = as_model(model).eval()
    geom: FrameGeometry = getattr(net, "geometry", None) or FrameGeometry()
    aff = geom.affine(cine)
    stack = cine.pixels if cine.is_stack else cine.pixels[:, None]  # (T, Z, H, W)
    ts = range(len(stack)) if frames is None else list(frames)
    x = np.stack([aff.image(normalise(stack[t], geom.norm)) for t in ts])  # (T', Z, S, S)
    keys = [(t, z) for t in ts for z in range(x.shape[1])]
    flat = torch.from_numpy(x.reshape(-1, 1, *x.shape[-2:]))
    dev = next(net.parameters()).device
    fast = dev.type == "cpu" and (cpu_bf16() if bf16 is None else bf16)
    if fast:
        net = net.to(memory_format=torch.channels_last)
    m, dsize = aff.matrix, (int(cine.pixels.shape[-1]), int(cine.pixels.shape[-2]))
    for i in range(0, len(flat), bs):
        xb = flat[i:i + bs].to(dev)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            logits = net(xb.contiguous(memory_format=torch.channels_last) if fast else xb)
        p = F.softmax(logits.float(), dim=1).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        for j, pj in enumerate(p):
            yield keys[i + j], cv2.warpAffine(pj, m, dsize, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


def log_prior(model) -> np.ndarray:
    """The per-class log-prior offsets a segmenter adds to its log-scores before the argmax (0: plain argmax)."""
    return np.asarray(getattr(as_model(model), "log_prior", np.zeros(len(NAMES))), dtype=np.float32)


def decide(probs: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Labels from class scores (..., C): argmax of log-score + log-prior, i.e. scores weighted by exp(prior)."""
    return (probs * np.exp(prior)).argmax(-1).astype(np.uint8)


def predict(model, cine: Cine, bs: int = 32, largest: bool = True, bf16: bool | None = None) -> np.ndarray:
    """Canonical labels for every frame (and slice) of `cine`, on the cine's own grid (uint8, pixels' shape).

    The decision uses the model's calibrated `log_prior` (`calibrate_prior`). largest: keep each structure's largest
    connected component per frame (`keep_largest`). bf16: see `frame_probs`."""
    n_z = cine.pixels.shape[1] if cine.is_stack else 1
    out = np.empty((cine.n_frames, n_z, *cine.pixels.shape[-2:]), dtype=np.uint8)  # (T, Z, H, W)
    prior = log_prior(model)
    for (t, z), p in frame_probs(model, cine, bs, bf16):
        out[t, z] = decide(p, prior)
    if largest:  # a (1, H, W) frame connects like a 2D one
        out = np.stack([keep_largest(f) for f in out])
    return out.reshape(cine.pixels.shape)


def _calibration_frames(cine: Cine, frame_step: int) -> list[int]:
    """Labelled frames used to calibrate: every `frame_step`-th labelled frame plus ED and ES."""
    lab = np.flatnonzero(cine.labelled)
    return sorted(set(lab[::frame_step].tolist()) | ({cine.ed, cine.es} & set(lab.tolist())))


def mean_dice(probs: Sequence[np.ndarray], truths: Sequence[np.ndarray], prior: np.ndarray,
              labels: Sequence[int]) -> float:
    """Mean over `labels` of the mean per-frame Dice (as `evaluate` scores, frames where a label is absent from
    both prediction and truth skipped) when deciding with `prior`."""
    n = len(NAMES)
    conf = np.stack([np.bincount((t.astype(np.int64) * n + decide(p, prior)).ravel(), minlength=n * n).reshape(n, n)
                     for p, t in zip(probs, truths)])  # (frames, truth, pred)
    per_label = []
    for lab in labels:
        inter, size = conf[:, lab, lab], conf[:, lab, :].sum(1) + conf[:, :, lab].sum(1)
        per_label.append(np.mean(2 * inter[size > 0] / size[size > 0]) if (size > 0).any() else np.nan)
    return float(np.nanmean(per_label))


def calibrate_prior(model, source: CohortStore | str | Path, ids: Sequence[str], frame_step: int = 5,
                    grid: Sequence[float] = tuple(np.round(np.arange(-1.0, 1.01, 0.1), 2)), sweeps: int = 2,
                    bs: int = 32, progress: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
    """Per-class log-prior offsets that maximise the mean Dice on held-out cines (coordinate search, background
    fixed at 0): the decision-side correction of a model that systematically grows one structure into its
    neighbour (a phantom-trained myocardium eating the LV cavity). Choose `ids` from the validation split.

    Returns the offsets (set them as `as_model(model).log_prior`; `export_segmenter` keeps them) and the search
    trace (label, offset, mean Dice). Scored before the largest-component filter."""
    store = source if isinstance(source, CohortStore) else CohortStore(source)
    if not len(ids):
        raise ValueError(f"calibrate_prior: no cines given from {store.root}")
    probs, truths, present = [], [], set()
    for cid in progress_bar(list(ids), display=progress, leave=False):
        c = store.read(cid)
        for (t, z), p in frame_probs(model, c, bs, frames=_calibration_frames(c, frame_step)):
            if z == 0:  # a new time frame: its truth over the whole stack
                probs.append([])
                truths.append(c.labels[t].reshape(-1, *c.pixels.shape[-2:]))
                present |= set(np.unique(truths[-1]).tolist())
            probs[-1].append(p.astype(np.float16))
    probs = [np.stack(p) for p in probs]  # per frame (Z, H, W, C) float16; `decide` computes in float32
    labels = sorted(present - {0})
    prior, trace = np.zeros(len(NAMES), dtype=np.float32), []
    best = mean_dice(probs, truths, prior, labels)
    trace.append(dict(sweep=0, label="none", offset=0.0, mean_dice=best))
    for sweep in range(1, sweeps + 1):
        for lab in labels:
            for off in grid:
                cand = prior.copy()
                cand[lab] = off
                score = mean_dice(probs, truths, cand, labels)
                trace.append(dict(sweep=sweep, label=NAMES[lab], offset=float(off), mean_dice=score))
                if score > best + 1e-6:
                    best, prior = score, cand
    return prior, pd.DataFrame(trace)


def predict_store(model, source: CohortStore | str | Path, ids: Sequence[str] | None = None, bs: int = 32,
                  progress: bool = True, **kwargs) -> dict[str, np.ndarray]:
    """`predict` (keyword arguments passed on) every cine, or the chosen ids, of a store: cine_id -> labels."""
    store = source if isinstance(source, CohortStore) else CohortStore(source)
    ids = store.ids() if ids is None else list(ids)
    bar = progress_bar(ids, display=progress, leave=False)
    return {cid: predict(model, store.read(cid), bs, **kwargs) for cid in bar}


# ---- evaluation ---------------------------------------------------------------------------------
def dice(pred: np.ndarray, truth: np.ndarray, label: int) -> float:
    """Dice overlap of one label (nan when the label is absent from both)."""
    p, t = np.asarray(pred) == label, np.asarray(truth) == label
    s = p.sum() + t.sum()
    return float(2.0 * np.logical_and(p, t).sum() / s) if s else float("nan")


def _surface(m: np.ndarray) -> np.ndarray:
    return m & ~ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(m.ndim, 1), border_value=0)


def hd95(pred: np.ndarray, truth: np.ndarray, label: int, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric surface distance in mm (MedPy's hd95); nan when either mask is empty."""
    p, t = np.asarray(pred) == label, np.asarray(truth) == label
    if not p.any() or not t.any():
        return float("nan")
    sp, st = _surface(p), _surface(t)
    d_to_t = ndimage.distance_transform_edt(~st, sampling=spacing)
    d_to_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return float(np.percentile(np.concatenate([d_to_t[sp], d_to_p[st]]), 95))


def evaluate(source: CohortStore | str | Path, predictions: Mapping[str, np.ndarray],
             labels: Sequence[int] | None = None) -> pd.DataFrame:
    """Dice and HD95 per cine, labelled frame and structure (SAX: over the whole stack), with ED/ES flags and the
    structure's true and predicted pixel counts.

    Structures default to those the cine's truth contains; a structure predicted where the truth
    has none at that frame scores Dice 0.
    """
    store = source if isinstance(source, CohortStore) else CohortStore(source)
    splits = store.splits()
    rows = []
    for cid, pred in predictions.items():
        c = store.read(cid)
        if c.labels is None:
            continue
        if pred.shape != c.labels.shape:
            raise ValueError(f"evaluate: prediction for {cid} has shape {pred.shape}, truth {c.labels.shape}")
        present = sorted(set(np.unique(c.labels[c.labelled]).tolist()) - {0}) if labels is None else list(labels)
        for t in np.flatnonzero(c.labelled):
            for lab in present:
                rows.append(dict(cine_id=cid, subject=c.subject, view=c.view, source=c.source,
                                 split=splits.get(str(c.subject)), frame=int(t), is_ed=t == c.ed, is_es=t == c.es,
                                 structure=NAMES[lab], dice=dice(pred[t], c.labels[t], lab),
                                 hd95=hd95(pred[t], c.labels[t], lab, c.spacing),
                                 truth_px=int((c.labels[t] == lab).sum()), pred_px=int((pred[t] == lab).sum())))
    return pd.DataFrame(rows)


def summarise(scores: pd.DataFrame, by: Sequence[str] = ("view", "structure")) -> pd.DataFrame:
    """Mean (sd) Dice and median HD95 at ED, ES and over all labelled frames."""
    parts = []
    for phase, sel in (("ED", scores["is_ed"]), ("ES", scores["is_es"]), ("all", slice(None))):
        g = scores[sel].groupby(list(by))
        parts.append(pd.DataFrame({"phase": phase, "n": g["dice"].count(), "dice_mean": g["dice"].mean(),
                                   "dice_sd": g["dice"].std(), "hd95_median_mm": g["hd95"].median()}))
    return pd.concat(parts).reset_index().set_index([*by, "phase"]).sort_index()


# ---- training convenience ------------------------------------------------------------------------
def train_segmenter(dls, epochs: int, lr: float, width: float = 0.25, init=None, **kwargs) -> Learner:
    """`seg_learner` + fit_one_cycle, optionally starting from another segmenter's weights (phantom pre-training)."""
    learn = seg_learner(dls, width=width, **kwargs)
    if init is not None:
        learn.model.load_state_dict(as_model(init).state_dict())
    if epochs > 0:
        learn.fit_one_cycle(epochs, lr)
    return learn


# ---- measurements from segmentations (cmrlib.measure) -----------------------------------------------
# the phantom's generating ("model") values in its meta, by cmrlib.measure key
MODEL_KEYS = {"LVEDV": "lv_edv_ml", "LVESV": "lv_esv_ml", "LVSV": "lv_sv_ml", "LVEF": "lv_ef", "LVM": "lv_mass_g",
              "RVEDV": "rv_edv_ml", "RVESV": "rv_esv_ml", "RVSV": "rv_sv_ml", "RVEF": "rv_ef", "LVCO": "co_l_min",
              "LAVmax": "la_max_ml", "LAVmin": "la_min_ml", "LAEF": "la_ef", "RAVmax": "ra_max_ml",
              "RAVmin": "ra_min_ml", "RAEF": "ra_ef"}


def _table1_inputs(cines: dict[str, Cine], labels_of, predicted: bool) -> dict:
    """table1 keyword arguments from one subject's cines and a cine -> label maps accessor (None: unusable).

    Predicted labels cover every frame; true labels count only where every frame is labelled, else (SAX)
    the labelled ED/ES frames are used."""
    kw = {}
    whole = lambda c: predicted or bool(c.labelled.all())
    sax = cines.get("SAX")
    if sax is not None and (lab := labels_of(sax)) is not None:
        ed, es = (None, None) if whole(sax) and sax.n_frames > 2 else (sax.ed, sax.es)  # whole cine: curve max/min
        kw.update(sax=lab, sax_spacing=sax.spacing, ed=ed, es=es)
    for view, k, sp in (("4CH", "la_4ch", "sp_4ch"), ("2CH", "la_2ch", "sp_2ch")):
        c = cines.get(view)
        lab = None if c is None else labels_of(c)
        if lab is not None and whole(c):
            kw.update({k: lab, sp: c.spacing})
    if "la_2ch" in kw and "la_4ch" not in kw:  # biplane needs the 4CH; a lone 2CH gives no atrial volume
        kw.pop("la_2ch"), kw.pop("sp_2ch")
    return kw


def subject_measures(source: CohortStore | str | Path, predictions: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Table-1 measures per subject from predicted labels (`<m>_auto`), true labels (`<m>_ref`) and, for the
    phantom, its generating values (`<m>_model`); BSA and heart rate from the subject's meta."""
    from .measure import MeasureError, table1

    store = source if isinstance(source, CohortStore) else CohortStore(source)
    splits = store.splits()
    by_subject: dict[str, dict[str, Cine]] = {}
    for cid in predictions:
        c = store.read(cid)
        by_subject.setdefault(str(c.subject), {})[c.view] = c
    rows = []
    for sub, cines in sorted(by_subject.items()):
        meta = next(iter(cines.values())).meta
        row = dict(subject=sub, split=splits.get(sub), group=meta.get("group", meta.get("condition")))
        ctx = dict(bsa=meta.get("bsa_m2"), hr_bpm=meta.get("hr_bpm"))
        for kind, labels_of in (("auto", lambda c: predictions.get(c.cine_id)), ("ref", lambda c: c.labels)):
            kw = _table1_inputs(cines, labels_of, kind == "auto")
            try:
                m = table1(**kw, **ctx) if kw else {}
            except MeasureError as e:  # e.g. an empty predicted chamber: keep the subject, flag the reason
                m, row[f"error_{kind}"] = {}, str(e)
            row.update({f"{k}_{kind}": v for k, v in m.items() if k not in ("ED", "ES", "BSA", "HR")})
        row.update({f"{k}_model": meta[v] for k, v in MODEL_KEYS.items() if v in meta})
        rows.append(row)
    return pd.DataFrame(rows)


def measure_pairs(df: pd.DataFrame, ref: str = "ref",
                  measures: Sequence[str] = ("LVEDV", "LVESV", "LVEF", "LVM", "RVEDV", "RVESV", "RVEF",
                                             "LAVmax", "LAVmin", "LAEF", "RAVmax", "RAVmin", "RAEF")) -> dict:
    """measure -> (auto column, reference column) for the measures both sides of `df` have (for cmrlib.stats)."""
    return {m: (f"{m}_auto", f"{m}_{ref}") for m in measures
            if f"{m}_auto" in df and f"{m}_{ref}" in df and df[[f"{m}_auto", f"{m}_{ref}"]].notna().all(1).sum() >= 3}


# ---- case figures ---------------------------------------------------------------------------------
def frame_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice over structures per cine and frame (the ranking behind best/median/worst figures)."""
    return scores.groupby(["cine_id", "view", "frame"], as_index=False)["dice"].mean()


def case_panels(source: CohortStore | str | Path, predictions: Mapping[str, np.ndarray], ranked: pd.DataFrame,
                picks: Sequence[int]) -> dict:
    """Images, truths, predictions (2D; SAX: the slice with most foreground) and titles for `plots.cases_figure`."""
    store = source if isinstance(source, CohortStore) else CohortStore(source)
    out = dict(images=[], truths=[], preds=[], scores=[], titles=[])
    for rank, i in zip(("best", "median", "worst"), picks):
        r = ranked.iloc[i]
        c = store.read(r.cine_id, frames=[int(r.frame)])
        img, tru, pre = c.pixels[0], c.labels[0], predictions[r.cine_id][int(r.frame)]
        if c.is_stack:
            z = int((tru > 0).sum(axis=(1, 2)).argmax())
            img, tru, pre = img[z], tru[z], pre[z]
        out["images"].append(img), out["truths"].append(tru), out["preds"].append(pre)
        out["scores"].append(float(r.dice)), out["titles"].append(f"{rank} · {r.view}")
    return out
