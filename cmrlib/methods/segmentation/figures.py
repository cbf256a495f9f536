"""Best / median / worst case panels for `plots.cases_figure`."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ...store import CohortStore


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
