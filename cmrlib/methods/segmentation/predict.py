"""Whole-cine segmentation: class scores mapped back onto the cine's grid, the calibrated decision, and its
calibration on validation cines."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastprogress.fastprogress import progress_bar
from scipy import ndimage

from ...data import FrameGeometry
from ...labels import NAMES
from ...learn import cpu_bf16
from ...record import Cine
from ...store import CohortStore
from ...transforms import Affine2D, normalise
from .learner import as_model


def keep_largest(labels: np.ndarray) -> np.ndarray:
    """Keep each structure's largest connected component (3D over a SAX stack, 2D on a frame); the rest -> background.

    Removes the scattered false positives a model makes on unfamiliar anatomy (as ukbb_cardiac's post-processing does).
    Each structure is labelled inside its own bounding box: the same components in the same order, on a fraction of
    the frame.
    """
    out = np.asarray(labels).copy()
    for lab, box in enumerate(ndimage.find_objects(out), start=1):
        if box is None:
            continue
        part = out[box]  # a view: the stray blobs are cleared in `out`
        comp, n = ndimage.label(part == lab)
        if n > 1:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            part[(comp > 0) & (comp != sizes.argmax())] = 0
    return out


def model_frames(net, cine: Cine, frames: Sequence[int] | None = None, slices: Sequence[int] | None = None,
                 centre: tuple[float, float] | None = None) -> tuple[np.ndarray, Affine2D, list[int]]:
    """The cine's frames (all, or `frames`) and slices (all, or `slices`) normalised and resampled to the network's
    geometry round the frame's centre (or `centre`, (x, y) in the cine's pixels), (T', Z', S, S); the map back to
    the cine's grid; the frame indices."""
    geom: FrameGeometry = getattr(net, "geometry", None) or FrameGeometry()
    aff = geom.affine(cine, centre)
    stack = cine.pixels if cine.is_stack else cine.pixels[:, None]  # (T, Z, H, W)
    if slices is not None:
        stack = stack[:, list(slices)]
    ts = list(range(len(stack))) if frames is None else list(frames)
    return np.stack([aff.image(normalise(stack[t], geom.norm)) for t in ts]), aff, ts


@torch.inference_mode()
def heart_centre(model, cine: Cine, frame: int = 0, bf16: bool | None = None) -> tuple[float, float] | None:
    """(x, y) in the cine's pixels: the centroid of the largest connected body of heart the network finds in one
    frame (every slice, read once round the frame's centre, unmirrored); None when it finds none. A second reading
    centred there sees the heart where training's windows put it, whatever the scanner's field of view."""
    net = as_model(model).eval()
    x, aff, _ = model_frames(net, cine, [frame])  # (1, Z, S, S)
    dev, fast = _device(net, bf16)
    xb = torch.from_numpy(x.reshape(-1, 1, *x.shape[-2:])).to(dev)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
        p = _scores(net.to(memory_format=torch.channels_last) if fast else net, xb, fast)
    heart = keep_largest((decide(p.permute(0, 2, 3, 1).cpu().numpy(), log_prior(net)) > 0).astype(np.uint8))
    if not heart.any():
        return None
    gy, gx = np.argwhere(heart)[:, -2:].mean(0)  # on the model grid
    cx, cy = aff.inverse_matrix @ np.array([gx, gy, 1.0])
    return float(cx), float(cy)


@torch.inference_mode()
def frame_probs(model, cine: Cine, bs: int = 32, bf16: bool | None = None, frames: Sequence[int] | None = None,
                centred: bool | None = None):
    """Yield (frame, slice) index and softmax class scores (H, W, C) on the cine's own grid, one 2D frame at a time.

    frames: only these time frames (None: all). bf16: CPU bfloat16 autocast with channels-last memory (None: when the
    CPU has native bf16, see `cpu_bf16`). A model whose `tta` is set averages its scores with those of the
    left-right mirrored frame (mirrored back). centred (None: the model's `centred`): read every frame round the
    heart the first frame shows (`heart_centre`) instead of round the frame's centre. Outside the model's field of
    view every score is 0."""
    net = as_model(model).eval()
    mirror = bool(getattr(net, "tta", False))
    centred = bool(getattr(net, "centred", False)) if centred is None else centred
    centre = heart_centre(net, cine, frame=0 if frames is None else list(frames)[0], bf16=bf16) if centred else None
    x, aff, ts = model_frames(net, cine, frames, centre=centre)  # (T', Z, S, S)
    keys = [(t, z) for t in ts for z in range(x.shape[1])]
    flat = torch.from_numpy(x.reshape(-1, 1, *x.shape[-2:]))
    dev, fast = _device(net, bf16)
    if fast:
        net = net.to(memory_format=torch.channels_last)
    m, dsize = aff.matrix, (int(cine.pixels.shape[-1]), int(cine.pixels.shape[-2]))
    for i in range(0, len(flat), bs):
        xb = flat[i:i + bs].to(dev)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            p = _scores(net, xb, fast)
            if mirror:
                p = (p + _scores(net, xb.flip(-1), fast).flip(-1)) / 2
        p = p.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        for j, pj in enumerate(p):
            yield keys[i + j], cv2.warpAffine(pj, m, dsize, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


@torch.inference_mode()
def encoder_features(model, cine: Cine, slices: Sequence[int], bs: int = 32) -> np.ndarray:
    """(T, slices, C) every encoder stage of the segmenter averaged over space and concatenated (fine to deep), per
    frame of the chosen SAX slices at the segmenter's own geometry: frozen features of a network trained to find
    the blood pool."""
    net = as_model(model).eval()
    x, _, _ = model_frames(net, cine, slices=slices)  # (T, Z', S, S)
    flat = torch.from_numpy(x.reshape(-1, 1, *x.shape[-2:]))
    dev = next(net.parameters()).device
    out = [torch.cat([f.mean((2, 3)) for f in net.encode(flat[i:i + bs].to(dev))], 1).float().cpu().numpy()
           for i in range(0, len(flat), bs)]
    return np.concatenate(out).reshape(len(x), len(slices), -1)


def _device(net, bf16: bool | None) -> tuple[torch.device, bool]:
    """The network's device, and whether to read on it in CPU bfloat16 (`bf16`; None: when the CPU has it natively)."""
    dev = next(net.parameters()).device
    return dev, dev.type == "cpu" and (cpu_bf16() if bf16 is None else bf16)


def _scores(net, xb: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Softmax class scores (N, C, S, S) of a batch of frames, in float32."""
    logits = net(xb.contiguous(memory_format=torch.channels_last) if channels_last else xb)
    return F.softmax(logits.float(), dim=1)


def log_prior(model) -> np.ndarray:
    """The per-class log-prior offsets a segmenter adds to its log-scores before the argmax (0: plain argmax)."""
    return np.asarray(getattr(as_model(model), "log_prior", np.zeros(len(NAMES))), dtype=np.float32)


def decide(probs: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Labels from class scores (..., C): argmax of log-score + log-prior, i.e. scores weighted by exp(prior)."""
    return (probs * np.exp(prior)).argmax(-1).astype(np.uint8)


def add_entropy(acc: dict[tuple[int, int], list[float]], probs: np.ndarray, labels: np.ndarray, frame: int = 0
                ) -> None:
    """Add one frame's normalised softmax entropy (0 sure, 1 uniform) summed over each structure's pixels to `acc`
    under (frame, label) (computed on the labelled pixels only: the background, most of a frame, adds nothing)."""
    inside = labels > 0
    p, lab = probs[inside], labels[inside]
    ent = -(p * np.log(np.clip(p, 1e-8, 1.0))).sum(-1) / np.log(probs.shape[-1])
    for k in np.unique(lab):
        mine = lab == k
        a = acc.setdefault((int(frame), int(k)), [0.0, 0])
        a[0] += float(ent[mine].sum())
        a[1] += int(mine.sum())


def predict(model, cine: Cine, bs: int = 32, largest: bool = True, bf16: bool | None = None,
            entropy: dict[tuple[int, int], list[float]] | None = None, centred: bool | None = None) -> np.ndarray:
    """Canonical labels for every frame (and slice) of `cine`, on the cine's own grid (uint8, pixels' shape).

    The decision uses the model's calibrated `log_prior` (`calibrate_prior`). largest: keep each structure's largest
    connected component per frame (`keep_largest`). bf16, centred: see `frame_probs`. entropy: a dict that gathers
    each frame's and label's entropy sum and pixel count (`add_entropy`), the model's uncertainty on this cine."""
    n_z = cine.pixels.shape[1] if cine.is_stack else 1
    out = np.empty((cine.n_frames, n_z, *cine.pixels.shape[-2:]), dtype=np.uint8)  # (T, Z, H, W)
    prior = log_prior(model)
    for (t, z), p in frame_probs(model, cine, bs, bf16, centred=centred):
        out[t, z] = decide(p, prior)
        if entropy is not None:
            add_entropy(entropy, p, out[t, z], t)
    if largest:  # a (1, H, W) frame connects like a 2D one
        out = np.stack([keep_largest(f) for f in out])
    return out.reshape(cine.pixels.shape)


def predict_off_centre(model, cine: Cine, shift_mm: float, **kwargs) -> np.ndarray:
    """`predict` (keyword arguments passed on) of the cine as a scanner whose field of view sits `shift_mm` to one
    side would show it (each frame padded on the left), mapped back onto the cine's grid: how a reading copes with
    a heart away from the frame's centre."""
    k = int(round(shift_mm / float(cine.spacing[-1])))
    pixels = np.pad(cine.pixels, [(0, 0)] * (cine.pixels.ndim - 1) + [(k, 0)])
    moved = Cine(subject=cine.subject, view=cine.view, pixels=pixels, spacing=cine.spacing,
                 frame_times=cine.frame_times)
    return predict(model, moved, **kwargs)[..., k:]


def mean_entropy(acc: dict[tuple[int, int], list[float]], frames: Sequence[int] | None = None) -> dict[str, float]:
    """Structure name -> mean normalised entropy from an `add_entropy` accumulator, over every frame or `frames`."""
    total: dict[int, list[float]] = {}
    for (t, k), (s, n) in acc.items():
        if frames is None or t in frames:
            a = total.setdefault(k, [0.0, 0])
            a[0] += s
            a[1] += n
    return {NAMES[k]: s / n for k, (s, n) in sorted(total.items()) if n}


def uncertainty_reference(model, store: CohortStore, ids: Sequence[str], q: float = 95.0) -> dict[str, float]:
    """Structure name -> the q-th percentile over validation cines of the model's mean entropy inside it: a new
    cine above it is more uncertain than (100 - q) % of what the model was checked on, a sign it looks unlike its
    training data."""
    per_cine = []
    for cid in ids:
        acc: dict = {}
        predict(model, store.read(cid), entropy=acc)
        per_cine.append(mean_entropy(acc))
    names = sorted({k for d in per_cine for k in d})
    return {k: float(np.percentile([d[k] for d in per_cine if k in d], q)) for k in names}


def uncertainty_references(models: dict, n: int) -> dict[str, dict[str, float]]:
    """Each model's (kind -> (model, store, views)) 95th-percentile structure entropy on `n` validation cines per
    view of its store (none with n = 0): what `cmrlib analyse` holds a new cine's against."""
    if not n:
        return {}
    return {kind: uncertainty_reference(model, st, st.select(views, "valid", n))
            for kind, (model, st, views) in models.items() if st.select(views, "valid", n)}


def _calibration_frames(cine: Cine, frame_step: int) -> list[int]:
    """Labelled frames used to calibrate: every `frame_step`-th labelled frame plus ED and ES."""
    lab = np.flatnonzero(cine.labelled)
    return sorted(set(lab[::frame_step].tolist()) | ({cine.ed, cine.es} & set(lab.tolist())))


class _Frames:
    """Calibration frames flattened once: every pixel's class scores (float32, as `decide` computes them) and its
    frame and true label as one int32 code, so scoring a prior is one weighted argmax and one bincount (in torch,
    on every thread)."""

    def __init__(self, probs: Sequence[np.ndarray], truths: Sequence[np.ndarray]):
        n = len(NAMES)
        self.scores = torch.from_numpy(np.concatenate([np.asarray(p).reshape(-1, n) for p in probs]).astype(np.float32))
        self.codes = torch.from_numpy(np.concatenate([((i * n + np.asarray(t, np.int64).ravel()) * n).astype(np.int32)
                                                      for i, t in enumerate(truths)]))
        self.n_frames = len(truths)

    def confusion(self, prior: np.ndarray) -> np.ndarray:
        """(frames, truth, prediction) pixel counts when deciding with `prior`."""
        n = len(NAMES)
        pred = (self.scores * torch.from_numpy(np.exp(prior, dtype=np.float32))).argmax(-1)
        counts = torch.bincount(self.codes + pred, minlength=self.n_frames * n * n)
        return counts.numpy().reshape(self.n_frames, n, n)

    def mean_dice(self, prior: np.ndarray, labels: Sequence[int]) -> float:
        """Mean over `labels` of the mean per-frame Dice when deciding with `prior` (`mean_dice`)."""
        conf = self.confusion(prior)
        per_label = []
        for lab in labels:
            inter, size = conf[:, lab, lab], conf[:, lab, :].sum(1) + conf[:, :, lab].sum(1)
            per_label.append(np.mean(2 * inter[size > 0] / size[size > 0]) if (size > 0).any() else np.nan)
        return float(np.nanmean(per_label))


def mean_dice(probs: Sequence[np.ndarray], truths: Sequence[np.ndarray], prior: np.ndarray,
              labels: Sequence[int]) -> float:
    """Mean over `labels` of the mean per-frame Dice (as `evaluate` scores, frames where a label is absent from
    both prediction and truth skipped) when deciding with `prior`."""
    return _Frames(probs, truths).mean_dice(prior, labels)


def calibrate_prior(model, source: CohortStore | str | Path, ids: Sequence[str], frame_step: int = 5,
                    grid: Sequence[float] = tuple(np.round(np.arange(-1.0, 1.01, 0.1), 2)), sweeps: int = 2,
                    bs: int = 32, progress: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
    """Per-class log-prior offsets that maximise the mean Dice on held-out cines (coordinate search, background
    fixed at 0): the decision-side correction of a model that systematically grows one structure into its
    neighbour (a phantom-trained myocardium eating the LV cavity). Choose `ids` from the validation split.

    Returns the offsets (set them as `as_model(model).log_prior`; `cmrlib.learn.export` keeps them) and the search
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
    frames = _Frames([np.stack(p) for p in probs], truths)  # per frame (Z, H, W, C) float16, scored in float32
    del probs
    labels = sorted(present - {0})
    prior, trace = np.zeros(len(NAMES), dtype=np.float32), []
    best = frames.mean_dice(prior, labels)
    trace.append(dict(sweep=0, label="none", offset=0.0, mean_dice=best))
    for sweep in range(1, sweeps + 1):
        for lab in labels:
            for off in grid:
                cand = prior.copy()
                cand[lab] = off
                score = frames.mean_dice(cand, labels)
                trace.append(dict(sweep=sweep, label=NAMES[lab], offset=float(off), mean_dice=score))
                if score > best + 1e-6:
                    best, prior = score, cand
    return prior, pd.DataFrame(trace)


def predict_store(model, source: CohortStore | str | Path, ids: Sequence[str] | None = None, bs: int = 32,
                  progress: bool = True, scheduler=None, workers: int = 1, folder: Path | None = None,
                  entropy: dict | None = None, **kwargs) -> dict[str, np.ndarray]:
    """`predict` (keyword arguments passed on) every cine, or the chosen ids, of a store: cine_id -> labels.

    scheduler / workers: one Dask task per cine (`CohortStore.map`), the model sent to each worker once. folder: a
    run's label store (`stored`), read where it holds a cine's labels and written where not. entropy: filled with
    cine_id -> its entropy sums (`add_entropy`)."""
    from .stored import network_key, segmented

    store = source if isinstance(source, CohortStore) else CohortStore(source)
    net = as_model(model)
    options = dict(folder=folder, net_key=network_key(net) if folder is not None else None, bs=bs,
                   with_entropy=entropy is not None, **kwargs)
    got = store.map(segmented, store.ids() if ids is None else list(ids), args=(net,), kwargs=options,
                    scheduler=scheduler, workers=workers, desc="segment", progress=progress)
    if entropy is not None:
        entropy.update({cid: acc for cid, (_, acc) in got.items()})
    return {cid: lab for cid, (lab, _) in got.items()}
