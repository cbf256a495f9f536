"""ED/ES on a cine: TempReg-Net's predicted curve, or the segmented LV volume curve (the baseline)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ...labels import LV
from ...measure import resample_cycle
from ...record import Cine
from ...store import CohortStore
from .curves import read_frames
from .data import mid_slice, seq_frames


@torch.no_grad()
def predict_curve(model: torch.nn.Module, frames: np.ndarray) -> np.ndarray:
    """The predicted curve (T,) for one prepared (T, S, S) sequence."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[None]
    return model(x.to(next(model.parameters()).device))[0].float().cpu().numpy()


def predict(model: torch.nn.Module, cine: Cine, size: int, zoom: float = 1.0, z: int | None = None,
           smooth: int = 1, decoder: str = "argmax", slices: int = 1, frames: int | None = None) -> dict:
    """End to end on a `Cine`: frames -> predicted curve -> ED/ES (0-based; `curves.read_frames`' decoder).
    A SAX stack is read on its middle slice, chosen without masks (or `z`); `slices`: the curves of that many
    slices about it averaged, so one slice's noise does not move the extremes. `frames`: the cycle resampled to
    that many frames for the network and its curve mapped back onto the cine's frames."""
    zs = [z] if z is not None else around_mid(cine, slices)
    curve = np.mean([_slice_curve(model, seq_frames(cine, size, k, zoom=zoom), frames) for k in zs], 0)
    ed, es = read_frames(curve, smooth, decoder)
    return dict(curve=curve, ed=ed, es=es)


def _slice_curve(model: torch.nn.Module, seq: np.ndarray, frames: int | None) -> np.ndarray:
    """One slice's predicted curve on its own frames, read at `frames` frames when given."""
    if not frames:
        return predict_curve(model, seq)
    return resample_cycle(predict_curve(model, resample_cycle(seq, int(frames))), len(seq))


def around_mid(cine: Cine, n: int) -> list[int]:
    """`n` neighbouring SAX slices centred on the stack's middle one (no masks: a patient's cine has none), inside
    the stack; [0] for a single-slice cine."""
    if not cine.is_stack:
        return [0]
    mid, depth = mid_slice(cine, masks=False), cine.pixels.shape[1]
    n = max(int(n), 1)
    first = int(np.clip(mid - n // 2, 0, max(depth - n, 0)))
    return list(range(first, min(first + n, depth)))


def predict_store(model: torch.nn.Module, store: CohortStore, ids: Sequence[str], size: int, zoom: float = 1.0,
                  scheduler=None, workers: int = 1, progress: bool = True) -> dict[str, dict]:
    """`predict` on every listed cine of a store (one Dask task per cine with a scheduler or workers > 1)."""
    return store.map(predict, ids, args=(model,), kwargs=dict(size=size, zoom=zoom), scheduler=scheduler,
                     workers=workers, desc="ED/ES", progress=progress)


def seg_detect(segmenter, cine: Cine, smooth: int = 1, decoder: str = "argmax") -> dict:
    """Baseline 1: ED = max, ES = min of the segmented LV blood-pool volume (SAX stack) or area (long axis) curve,
    after a circular moving average of `smooth` frames (or another `curves.DECODERS` reading of the same curve);
    `segmenter`: the segmentation Predictor."""
    from ...measure import volume_curve

    curve = volume_curve(segmenter.labels(cine), cine.spacing, LV)
    ed, es = read_frames(curve, smooth, decoder)
    return dict(curve=curve, ed=ed, es=es)


def seam_detect(cine: Cine, systole: float = 1 / 3) -> dict:
    """The seam control: ED = the frame after the largest frame-to-frame change (cyclic), ES `systole` of the cycle
    later. A cine rolled so that its recording's end meets its start has a jump there, at the true ED; a detector
    no better than this may be reading the seam, not the heart."""
    x = np.asarray(cine.pixels, dtype=np.float32).reshape(cine.n_frames, -1)
    x = (x - x.mean()) / (x.std() + 1e-6)
    jump = np.abs(x - np.roll(x, 1, axis=0)).mean(1)  # jump[t]: frame t-1 to frame t
    ed = int(np.argmax(jump))
    return dict(curve=jump, ed=ed, es=int(round(ed + systole * cine.n_frames)) % cine.n_frames)


def combine(first: dict, second: dict, n: int) -> dict:
    """Two detectors' ED and ES averaged on the cycle (the circular mean of each pair, rounded to a frame)."""
    def mean(a: int, b: int) -> int:
        ang = 2 * np.pi * np.array([a, b]) / n
        return int(round(np.angle(np.exp(1j * ang).mean()) / (2 * np.pi) * n)) % n

    return dict(curve=first["curve"], ed=mean(first["ed"], second["ed"]), es=mean(first["es"], second["es"]))
