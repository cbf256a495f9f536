"""HeartMAE on real SAX patients: each fold's views labelled by role, a ridge read-out of LVEF from frozen subject
features trained on the fold's training patients (its strength chosen on the validation patients), and the
out-of-fold errors summarised with bootstrap CIs, paired against the random encoder."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ...store import fold_roles
from ...utils import rng
from .data import CineSet
from .evaluate import boot_mae_ci
from .gates import subject_means

ALPHAS = np.logspace(-2, 4, 13)  # ridge strengths tried on the validation patients


def fold_views(cines: CineSet, folds: pd.Series, fold: int) -> CineSet:
    """The views with `split` set to each subject's role in `fold` (train, valid or test)."""
    k = int(folds.max()) + 1
    role = {f: r for r, fs in fold_roles(fold, k).items() for f in fs}
    table = cines.table.assign(split=cines.table["subject"].map(folds).map(role))
    return CineSet(cines.frames, cines.weight, table, cines.failures)


def ridge_fold(x: pd.DataFrame, y: pd.Series, roles: Mapping[str, list[str]]) -> tuple[pd.Series, float, float]:
    """A standardised ridge of `y` on the subject features `x` (subject-indexed; missing values take the training
    median): fitted on the training patients at each of `ALPHAS`, the one with the lowest validation MAE refitted
    on training and validation and applied to the test patients. (test predictions, validation MAE, alpha)."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tr, va, te = (list(roles[r]) for r in ("train", "valid", "test"))
    median = x.loc[tr].median()
    x = x.loc[:, median.notna()].fillna(median)

    def fit(alpha: float, rows: list[str]):
        return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x.loc[rows], y.loc[rows])

    maes = [float(np.abs(fit(a, tr).predict(x.loc[va]) - y.loc[va]).mean()) for a in ALPHAS]
    best = int(np.argmin(maes))
    model = fit(ALPHAS[best], tr + va)
    return pd.Series(model.predict(x.loc[te]), index=te), maes[best], float(ALPHAS[best])


def subject_features(features: np.ndarray, table: pd.DataFrame, subjects: list[str]) -> pd.DataFrame:
    """The mean of each subject's view features (views x crops x clips), one row per subject."""
    return pd.DataFrame(subject_means(features, table, subjects), index=subjects)


def lvef_table(pred: pd.DataFrame, reference: str, n_boot: int, seed: int) -> pd.DataFrame:
    """Per encoder: the out-of-fold LVEF MAE with its bootstrap CI over patients, and its paired difference from
    `reference` (the random encoder) with the CI of that difference."""
    rows = []
    err = (pred.pivot(index="subject", columns="encoder", values="predicted")
           .sub(pred.groupby("subject").reference.first(), axis=0).abs())
    idx = rng(seed).integers(0, len(err), (n_boot, len(err))) if n_boot and len(err) > 1 else None
    for enc in err.columns:
        e = err[enc].to_numpy()
        lo, hi = boot_mae_ci(e, n_boot, seed)
        d = e - err[reference].to_numpy()
        d_lo, d_hi = (np.percentile(d[idx].mean(1), [2.5, 97.5]) if idx is not None else (np.nan, np.nan))
        rows.append(dict(encoder=enc, n=len(e), MAE=float(e.mean()), ci_low=lo, ci_high=hi,
                         minus_random=float(d.mean()), minus_random_low=float(d_lo), minus_random_high=float(d_hi)))
    return pd.DataFrame(rows).sort_values("MAE").reset_index(drop=True)
