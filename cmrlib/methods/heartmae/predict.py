"""A pretrained encoder (and optionally a trained probe) on one subject's cines: multiview features, and the
probe's predictions with its attention over the views."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ...models.mae_st import VideoMAE
from ...record import Cine
from .data import CineSet, preprocess_cine
from .features import bags, extract, mae_encoder
from .heads import FittedProbe
from .learner import HeartMAEConfig


def predict(model: VideoMAE, cfg: HeartMAEConfig, meta: dict, cines: Sequence[Cine], probe: FittedProbe | None = None,
            k: int = 3, t: int = 2, cycle: int = 30, sax_k: int = 3, sigma_mm: float = 18.0) -> dict:
    """features (views, k * t, D) and view names; with `probe`, the subject's predictions (one row) and attention.
    `model, cfg, meta` as `load` returns them; the preprocessing keywords must match the pretraining's."""
    views = [v for c in cines for v in preprocess_cine(c, cfg.load, cycle, sax_k, sigma_mm)]
    subject = str(cines[0].subject)
    table = pd.DataFrame(dict(view_id=[v[0] for v in views], subject=subject))
    cs = CineSet(np.stack([v[1] for v in views]), np.stack([v[2] for v in views]), table)
    feats = extract(mae_encoder(model, meta["mean"], meta["std"]), cs, cfg.size, cfg.frames, k, t, progress=False)
    out = dict(features=feats, views=table["view_id"].tolist())
    if probe is not None:
        h, mask, names = bags(feats, table, [subject])
        out.update(predictions=probe.predict(h, mask, [subject]), attention=probe.pooled(h, mask)[1][0],
                   attention_views=names[0])
    return out
