"""A trained SSLHF classifier on one patient's SAX cine: find the LV on the ED frame, cut a patch per LV slice,
score every patch and average them (eq. 3)."""
from __future__ import annotations

import numpy as np
from torch import nn

from ...record import Cine
from .. import segmentation
from .data import ed_frame, preprocess
from .learner import scores


def predict(model: nn.Module, cine: Cine, segmenter, **prep) -> dict:
    """HFrEF probability of a patient (the mean over its patches) with each patch's probability and slice; `prep`
    holds the patch settings the model was trained with (`preprocess`'s keywords). Raises `PatchError` when the
    cine gives no patch."""
    x, slices = preprocess(cine, segmentation.predict(segmenter, ed_frame(cine))[0], **prep)
    p = scores(model, x)
    return dict(probability=float(np.mean(p)), patches=p.tolist(), slices=slices)
