"""The disease baseline of "expert features": the segmentation-derived measures of notebook 01's models (CUSSP
Table 1: volumes, EFs, mass, atrial volumes, each BSA-indexed) in a logistic regression per condition."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

EXPERT = "expert features (segmentation)"


def expert_features(measures: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(subject-indexed measures, failures with reasons) from the run's Table-1 measures (`Study.table1_measures`):
    a subject whose masks gave no measure is a failure, not a row of missing values."""
    err = measures.get("error_auto", pd.Series(None, index=measures.index, dtype=object))
    failed = err.notna().to_numpy()
    fails = pd.DataFrame({"subject": measures.index[failed], "reason": err[failed].to_numpy()})
    kept = measures.loc[~failed].drop(columns="error_auto", errors="ignore")
    return kept.rename(columns=lambda c: c.removesuffix("_auto")), fails


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
