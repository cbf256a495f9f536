"""A trained CUSSP (or CNN-LSTM) classifier on one 4CH cine: segment, localise the valve, cut and equalise the
patch, score."""
from __future__ import annotations

import numpy as np
from torch import nn

from ...record import Cine
from .. import segmentation
from .data import preprocess
from .learner import scores
from .valve import ValveError


def predict(model: nn.Module, cine: Cine, segmenter, input: str = "cycle", size: int = 64, patch_mm: float = 1.8,
            frames: int = 30, window: int = 25, crop_size: int = 64, crop_mm: float = 2.5) -> float:
    """The MR probability of one 4CH cine. input: "cycle" (CUSSP-1/2/3, -SIAM), "window" (CUSSP-SIAM-25) or
    "crops" (CNN-LSTM); the preprocessing settings must be the ones the model was trained with. Raises
    `ValveError` when the valve cannot be placed or the cine is too short for the window."""
    p = preprocess(cine, segmentation.predict(segmenter, cine), size, patch_mm, frames, window, crop_size, crop_mm)
    if p[input] is None:
        raise ValveError(f"{cine.cine_id}: {p['window_error']}")
    return float(scores(model, np.asarray(p[input])[None])[0])
