"""Best / median / worst case panels for `plots.cases_figure`."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ...store import CohortStore


def _frame(source: CohortStore | Mapping, cine_id: str, t: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Image, truth and whether it is a SAX stack, of one frame of a cine in a store or in cines by id."""
    if isinstance(source, Mapping):
        c = source[cine_id]
        return c.pixels[t], c.labels[t], c.is_stack
    c = source.read(cine_id, frames=[t])
    return c.pixels[0], c.labels[0], c.is_stack


def case_panels(source: CohortStore | str | Path, predictions: Mapping[str, np.ndarray], ranked: pd.DataFrame,
                picks: Sequence[int]) -> dict:
    """Images, truths, predictions (2D; SAX: the slice with most foreground) and titles for `plots.cases_figure`;
    `source` a store, or cines by id."""
    source = source if isinstance(source, (Mapping, CohortStore)) else CohortStore(source)
    out = dict(images=[], truths=[], preds=[], scores=[], titles=[])
    for rank, i in zip(("best", "median", "worst"), picks):
        r = ranked.iloc[i]
        img, tru, stack = _frame(source, r.cine_id, int(r.frame))
        pre = predictions[r.cine_id][int(r.frame)]
        if stack:
            z = int((tru > 0).sum(axis=(1, 2)).argmax())
            img, tru, pre = img[z], tru[z], pre[z]
        out["images"].append(img), out["truths"].append(tru), out["preds"].append(pre)
        out["scores"].append(float(r.dice)), out["titles"].append(f"{rank} · {r.view}")
    return out


# each figure's caption, beside the drawing it describes (`Study.figure` writes it with the figure)
CAPTIONS = {
    "01_agreement_phantom": "regression and Bland-Altman of the segmentation measures against the phantom's"
                            " values",
    "01_agreement_acdc": "regression and Bland-Altman of the segmentation measures against ACDC's "
                         "ground-truth masks",
    "01_cases_phantom": "best, median and worst phantom test frames by Dice, truth beside prediction",
    "01_cases_acdc": ("the shipped SAX model on ACDC's held-out patients: best, median and worst frames by Dice, truth "
                      "beside prediction"),
    "01_cases_ukbb": ("the {n} long-axis model on the UK Biobank demo cines of subjects it did not train on: best, "
                      "median and worst frames by Dice, the pseudo-labels (a network's) beside the prediction"),
}
