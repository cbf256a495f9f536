"""CUSSP on real 4CH cines none of its rows trained on: the valve found on the run's segmentation, the patch centre
against the annulus of the cine's pseudo-labels (where it has them), each row's MR probability. No real cine here
carries an MR label, so this is a pipeline check, never an accuracy."""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import pandas as pd

from ...io.errors import IngestError
from ...labels import NoLabels
from ...measure import MeasureError, valve_hinges
from .data import preprocess
from .learner import INPUTS, scores
from .valve import ValveError

CENTRE_MM = 8.0  # the patch centre within this of the pseudo-label annulus midpoint on every real cine that has one


def real_rows(found: list, find: Callable, prep: dict, models: dict) -> tuple[pd.DataFrame, list]:
    """Per real cine ((name, cine) pairs): whether the valve was found, the patch centre's distance from the
    pseudo-label annulus midpoint (mm) and each row's MR probability; and (name, cine, labels) of those with a valve,
    for the preprocessing figure."""
    rows, cases = [], []
    for name, c in found:
        row = dict(cine=name, frames=c.n_frames)
        try:
            labels = find(c)
            inputs = preprocess(c, labels, **prep)
            vp = inputs["valve"]
        except (ValveError, MeasureError, NoLabels, IngestError) as e:
            rows.append(dict(row, valve=f"not found: {e}"))
            continue
        row["valve"] = "found"
        if c.labels is not None and c.labelled[vp.frame]:
            with contextlib.suppress(MeasureError):  # no LV/LA border in the pseudo-labels: no distance
                mid = valve_hinges(c.labels[vp.frame]).mean(0)
                row["centre_from_pseudo_mm"] = float(np.linalg.norm((np.asarray(vp.valve.center) - mid)
                                                                    * np.asarray(c.spacing[-2:])[::-1]))
        for r, m in models.items():
            x = inputs[INPUTS[r]]
            row[f"P(MR) {r}"] = float(scores(m.model, np.asarray(x)[None])[0]) if x is not None else np.nan
        rows.append(row)
        cases.append((name, c, labels))
    return pd.DataFrame(rows), cases


def real_checks(real: pd.DataFrame | None) -> list[tuple]:
    """The real-cine targets (none without real cines): a valve on every real 4CH cine, and the patch centre within
    `CENTRE_MM` of the pseudo-label annulus midpoint on every cine that has one."""
    if real is None:
        return []
    out = [("real 4CH cines without a valve", int((real.valve != "found").sum()), "<=", 0)]
    if "centre_from_pseudo_mm" in real and real.centre_from_pseudo_mm.notna().any():
        out.append(("real 4CH: largest patch-centre distance from the pseudo-label annulus midpoint (mm)",
                    float(real.centre_from_pseudo_mm.max()), "<=", CENTRE_MM))
    return out
