"""The disease baseline of "expert features": the segmentation-derived measures of notebook 01's models (CUSSP
Table 1: volumes, EFs, mass, atrial volumes, each BSA-indexed) in a logistic regression per condition."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from fastprogress.fastprogress import progress_bar
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ...measure import MeasureError, table1, table1_frames
from ...store import CohortStore

EXPERT = "expert features (segmentation)"


def subject_measures(store: CohortStore, subject: str, segmenter) -> dict:
    """Table-1 measures of one subject from its predicted masks: the SAX stack at ED and ES only (a tenth of the
    frames; the phantom and most sources record them) or every frame, 2CH and 4CH cines whole (atrial curves)."""
    ids = {v: f"{subject}_{v}" for v in ("SAX", "2CH", "4CH")}
    kw, meta = {}, {}
    if ids["SAX"] in store and "SAX" in segmenter.nets:
        sax = store.read(ids["SAX"], table1_frames(store, ids["SAX"]))
        kw.update(sax=segmenter.labels(sax), sax_spacing=sax.spacing, ed=sax.ed, es=sax.es)
        meta = sax.meta
    for view, k, sp in (("4CH", "la_4ch", "sp_4ch"), ("2CH", "la_2ch", "sp_2ch")):
        if ids[view] in store and "LAX" in segmenter.nets:
            c = store.read(ids[view])
            kw.update({k: segmenter.labels(c), sp: c.spacing})
            meta = meta or c.meta
    if "la_2ch" in kw and "la_4ch" not in kw:
        kw.pop("la_2ch"), kw.pop("sp_2ch")
    m = table1(**kw, bsa=meta.get("bsa_m2"), hr_bpm=meta.get("hr_bpm")) if kw else {}
    return {k: v for k, v in m.items() if k not in ("ED", "ES", "BSA", "HR")}


def expert_features(store: CohortStore, subjects: Sequence[str], segmenter, progress: bool = True
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(subject-indexed measures, failures with reasons) by the segmentation Predictor `segmenter`: a subject
    whose masks give no measure is recorded."""
    rows, fails = {}, []
    for s in progress_bar(list(subjects), display=progress, leave=False):
        try:
            rows[s] = subject_measures(store, s, segmenter)
        except MeasureError as e:
            fails.append(dict(subject=s, reason=str(e)))
    return (pd.DataFrame.from_dict(rows, orient="index").rename_axis("subject"),
            pd.DataFrame(fails, columns=["subject", "reason"]))


def logistic_probs(x: pd.DataFrame, y: pd.DataFrame, train: Sequence[str], valid: Sequence[str],
                   test: Sequence[str], cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0)) -> tuple[pd.DataFrame, dict]:
    """Per condition: a standardised logistic regression (scikit-learn, missing measures imputed with the training
    median; a measure no training subject has is dropped), its inverse regularisation C chosen by validation AP;
    test probabilities and the C chosen."""
    median = x.loc[list(train)].median()
    x = x.loc[:, median.notna()].fillna(median)
    out, chosen = pd.DataFrame(index=pd.Index(list(test), name="subject")), {}
    for task in y.columns:
        tr = [s for s in train if np.isfinite(y.at[s, task])]
        if y.loc[tr, task].nunique() < 2:
            continue
        fits = {c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(
            x.loc[tr], y.loc[tr, task].astype(int)) for c in cs}
        va = [s for s in valid if np.isfinite(y.at[s, task])]
        score = lambda c: (average_precision_score(y.loc[va, task], fits[c].predict_proba(x.loc[va])[:, 1])
                           if y.loc[va, task].nunique() == 2 else -abs(np.log10(c)))
        chosen[task] = max(cs, key=score)  # with one class among validation subjects: C = 1
        out[task] = fits[chosen[task]].predict_proba(x.loc[list(test)])[:, 1]
    return out, chosen
