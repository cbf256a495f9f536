"""ED/ES on a cine: TempReg-Net's predicted curve, or the segmented LV volume curve (the baseline)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ...labels import LV
from ...record import Cine
from ...store import CohortStore
from .curves import decode
from .data import seq_frames


@torch.no_grad()
def predict_curve(model: torch.nn.Module, frames: np.ndarray) -> np.ndarray:
    """The predicted curve (T,) for one prepared (T, S, S) sequence."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[None]
    return model(x.to(next(model.parameters()).device))[0].float().cpu().numpy()


def predict(model: torch.nn.Module, cine: Cine, size: int, zoom: float = 1.0, z: int | None = None,
           smooth: int = 1) -> dict:
    """End to end on a `Cine`: frames -> predicted curve -> ED/ES (0-based)."""
    curve = predict_curve(model, seq_frames(cine, size, z, zoom=zoom))
    ed, es = decode(curve, smooth)
    return dict(curve=curve, ed=ed, es=es)


def predict_store(model: torch.nn.Module, store: CohortStore, ids: Sequence[str], size: int, zoom: float = 1.0,
                  scheduler=None, workers: int = 1, progress: bool = True) -> dict[str, dict]:
    """`predict` on every listed cine of a store (one Dask task per cine with a scheduler or workers > 1)."""
    return store.map(predict, ids, args=(model,), kwargs=dict(size=size, zoom=zoom), scheduler=scheduler,
                     workers=workers, desc="ED/ES", progress=progress)


def seg_detect(segmenter, cine: Cine) -> dict:
    """Baseline 1: ED = max, ES = min of the segmented LV blood-pool volume (SAX stack) or area (long axis) curve;
    `segmenter`: the segmentation Predictor."""
    from ...measure import ed_es_from_curve, volume_curve

    labels = segmenter.labels(cine)
    curve = volume_curve(labels, cine.spacing, LV)
    ed, es = ed_es_from_curve(curve)
    return dict(curve=curve, ed=ed, es=es)
