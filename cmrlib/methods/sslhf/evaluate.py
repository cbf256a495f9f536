"""SSLHF's Tables I-III from out-of-fold predictions: patch- and patient-level (eq. 3: the mean of a patient's patch
probabilities) AUC and accuracy per fold at thresholds chosen on that fold's validation patients, the pooled
out-of-fold AUC and accuracy with a patient-bootstrap 95 % CI, paired differences from SSLHF, and mean ROC curves
(the paper's Fig. 4)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...results import Target
from ...stats import accuracy_threshold, binary_metrics, mean_ci, fmt_ci
from ...utils import seed_for
from .learner import BASELINES, NO_PROXY, PROXIES

PRED_COLUMNS = ("row", "fold", "split", "subject", "slice", "y", "score")
# the paper's Tables I-III (184 patients, 5-fold cross-validation means)
PAPER = pd.DataFrame(
    [[0.8289, 0.7682, 0.8505, 0.8208], [0.7609, 0.7178, 0.7984, 0.7496], [0.7682, 0.7328, 0.8043, 0.7774],
     [0.7890, 0.7518, 0.8139, 0.7826], [0.8145, 0.7650, 0.8293, 0.8204], [0.7450, 0.7100, 0.7678, 0.7614],
     [0.7145, 0.7052, 0.7822, 0.7614]],
    index=["SSLHF", NO_PROXY, *list(PROXIES)[1:], *BASELINES],
    columns=pd.MultiIndex.from_product([["patch", "patient"], ["auc", "acc"]]))
TABLES = {"I": ["SSLHF"], "II": [NO_PROXY, *list(PROXIES)[1:], "SSLHF"], "III": [*BASELINES, "SSLHF"]}


def _keys(pred: pd.DataFrame) -> list[str]:
    """The columns that name one trained model (row, fold and any experiment column such as `fraction`)."""
    return [c for c in pred.columns if c not in PRED_COLUMNS or c in ("row", "fold")]


def patient_scores(pred: pd.DataFrame) -> pd.DataFrame:
    """Eq. 3: each patient's score is the mean of its patches' probabilities (one line per model, split, patient)."""
    keys = _keys(pred) + ["split", "subject"]
    return pred.groupby(keys, sort=False).agg(y=("y", "first"), score=("score", "mean"),
                                              n_patches=("score", "size")).reset_index()


def at_level(pred: pd.DataFrame, level: str) -> pd.DataFrame:
    """Predictions at the patch or the patient level."""
    if level not in ("patch", "patient"):
        raise ValueError(f"level is 'patch' or 'patient', got {level!r}")
    return pred if level == "patch" else patient_scores(pred)


MEASUREMENT = "segmentation LVEF < 50 %"  # the measurement baseline on real patients: the run's segmenter's LVEF


def measurement_rows(pred: pd.DataFrame, lvef: pd.Series) -> pd.DataFrame:
    """The measurement baseline as a model's predictions: each test patient's segmented LVEF as a score, 0.5 at
    50 % (higher: lower EF) and no validation rows, so its threshold stays the 50 % rule; one score per patient, so
    patch and patient level agree. A patient without a segmented LVEF is left out."""
    test = pred[pred.split == "test"].drop_duplicates(["fold", "fraction", "subject"])
    test = test.assign(row=MEASUREMENT, slice=0, score=0.5 + (50.0 - test.subject.map(lvef).astype(float)) / 100.0)
    return test.dropna(subset=["score"])[list(pred.columns)].reset_index(drop=True)


def fold_metrics(pred: pd.DataFrame) -> pd.DataFrame:
    """Per model and level: test AUC and accuracy at the accuracy-maximising threshold of the validation split. A test
    fold with one class only has no AUC: its `note` says so with the class counts."""
    rows = []
    for level in ("patch", "patient"):
        d = at_level(pred, level)
        for key, g in d.groupby(_keys(pred), sort=False):
            v, t = g[g.split == "valid"], g[g.split == "test"]
            thr = accuracy_threshold(v.y, v.score) if len(v) else 0.5
            m = binary_metrics(t.y, t.score, thr) if len(t) else dict(roc_auc=np.nan, accuracy=np.nan)
            n_pos = int(t.y.sum())
            note = "" if 0 < n_pos < len(t) else f"AUC not testable: {n_pos} HFrEF and {len(t) - n_pos} HFpEF"
            rows.append(dict(zip(_keys(pred), key if isinstance(key, tuple) else (key,)), level=level,
                             auc=m["roc_auc"], acc=m["accuracy"], threshold=thr, n=len(t), n_hfref=n_pos, note=note))
    return pd.DataFrame(rows, columns=[*_keys(pred), "level", "auc", "acc", "threshold", "n", "n_hfref", "note"])


def summarised(pred: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fold metrics and their pooled summary with the run's bootstrap seed: how every SSLHF table is scored."""
    fm = fold_metrics(pred)
    return fm, pooled_summary(pred, fm, seed=seed_for(seed, "sslhf", "bootstrap"))


def pooled_summary(pred: pd.DataFrame, fm: pd.DataFrame, seed=0, n_boot: int = 1000,
                   conf: float = 0.95) -> pd.DataFrame:
    """Every model's test predictions pooled over its folds (each scored by its own fold's model, accuracy at its
    fold's validation threshold from `fm`), with percentile intervals from a patient bootstrap stratified by class
    (a patient's patches resampled together): an interval of one AUC, inside [0, 1]; `folds`: the folds pooled."""
    from sklearn.metrics import roc_auc_score

    from ...stats import roc_auc
    from ...utils import rng

    keys = [c for c in fm.columns if c not in ("fold", "level", "auc", "acc", "threshold", "n", "n_hfref", "note")]
    rows = []
    for level in ("patch", "patient"):
        d = at_level(pred, level)
        thr = fm[fm.level == level].set_index(keys + ["fold"])["threshold"]
        for key, g in d[d.split == "test"].groupby(keys, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            t = thr.reindex([(*key, f) for f in g.fold]).to_numpy(float)
            correct = ((g.score.to_numpy() >= t).astype(int) == g.y.to_numpy()).astype(float)
            y, s = g.y.to_numpy(int), g.score.to_numpy(float)
            both = len(np.unique(y)) == 2
            value = dict(auc=roc_auc_score(y, s) if both else np.nan, acc=float(correct.mean()))
            boots = {"auc": [], "acc": []}
            if both:
                patients = g.groupby("subject").y.first()
                where = {p: np.flatnonzero(g.subject.to_numpy() == p) for p in patients.index}
                by_class = [patients.index[patients == c].to_numpy() for c in (0, 1)]
                gen = rng(seed)
                for _ in range(n_boot):
                    pick = np.concatenate([gen.choice(ids, len(ids)) for ids in by_class])
                    ix = np.concatenate([where[p] for p in pick])
                    boots["auc"].append(roc_auc(y[ix], s[ix]))
                    boots["acc"].append(correct[ix].mean())
            for metric in ("auc", "acc"):
                lo, hi = (np.percentile(boots[metric], [50 * (1 - conf), 50 * (1 + conf)]) if boots[metric]
                          else (np.nan, np.nan))
                row = dict(zip(keys, key), level=level, metric=metric, mean=value[metric], ci_low=float(lo),
                           ci_high=float(hi), folds=int(g.fold.nunique()))
                name = row.get("row")
                row["paper"] = PAPER.loc[name, (level, metric)] if name in PAPER.index else np.nan
                rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, "level", "metric", "mean", "ci_low", "ci_high", "folds", "paper"])


def paired_auc(pred: pd.DataFrame, ref: str, other: str, seed=0, n_boot: int = 1000,
               conf: float = 0.95) -> tuple[float, float, float, int]:
    """`ref`'s pooled patient-level test AUC minus `other`'s on the patients both scored, with the interval of a
    patient bootstrap stratified by class (`stats.paired_auc_difference`): (difference, low, high, n patients);
    NaNs when a row is missing or the patients hold one class."""
    from ...stats import paired_auc_difference

    d = patient_scores(pred[(pred.split == "test") & pred.row.isin([ref, other])])
    s = d.pivot_table(index="subject", columns="row", values="score").dropna()
    if ref not in s or other not in s:
        return np.nan, np.nan, np.nan, 0
    y = d.groupby("subject").y.first().reindex(s.index).to_numpy(int)
    if len(np.unique(y)) < 2:
        return np.nan, np.nan, np.nan, len(s)
    return (*paired_auc_difference(y, s[ref].to_numpy(), s[other].to_numpy(), n_boot, seed, conf), len(y))


def table(summ: pd.DataFrame, rows, digits: int = 3, n_folds: int | None = None) -> pd.DataFrame:
    """The paper's layout for some rows: 'mean (low-high)' per level and metric, the paper's value beside each; a row
    that trained in no fold reads 'failed', one that trained in fewer than `n_folds` says in how many."""
    out = {}
    for r in rows:
        line = {}
        for level in ("patch", "patient"):
            for metric in ("auc", "acc"):
                s = summ[(summ.row == r) & (summ.level == level) & (summ.metric == metric)]
                name = f"{level} {metric.upper()}"
                if not len(s) or not s.iloc[0].folds:
                    line[name] = "failed" if not len(s) else "not testable"
                else:
                    s = s.iloc[0]
                    cell = fmt_ci(s["mean"], s.ci_low, s.ci_high, digits)
                    line[name] = cell if n_folds is None or s.folds == n_folds else f"{cell} ({s.folds} folds)"
                line[f"{name} (paper)"] = PAPER.loc[r, (level, metric)] if r in PAPER.index else np.nan
        out[r] = line
    return pd.DataFrame(out).T.rename_axis("row")


def differences(fm: pd.DataFrame, ref: str = "SSLHF", level: str = "patient", metric: str = "auc") -> pd.DataFrame:
    """`ref` minus every other row, fold by fold on the same test patients: the mean difference with its 95 % CI
    and the number of folds where `ref` is ahead (a CI that excludes 0 is a difference the folds support)."""
    d = fm[fm.level == level].pivot_table(index="fold", columns="row", values=metric)
    rows = []
    for r in [c for c in d.columns if c != ref]:
        diff = d[ref] - d[r]
        mean, lo, hi = mean_ci(diff)
        rows.append(dict(row=r, level=level, metric=metric, difference=mean, ci_low=lo, ci_high=hi,
                         folds_ahead=int((diff > 0).sum()), folds=int(diff.notna().sum())))
    return pd.DataFrame(rows)


def detectability(fm: pd.DataFrame, patients: int, ref: str = "SSLHF", other: str = "A: no proxy",
                  delta: float = 0.05, power: float = 0.8, alpha: float = 0.05) -> dict:
    """Whether a patient-AUC gain of `delta` of `ref` over `other` (the paper's 0.05) can be detected by the
    fold-paired t-test at this cohort size, and the cohort size that would detect it: from the measured SD of the
    fold differences, which shrinks as 1/sqrt(patients) when each fold tests more patients (statsmodels' t-test
    power, `power` at level `alpha`)."""
    from statsmodels.stats.power import TTestPower

    d = fm[fm.level == "patient"].pivot_table(index="fold", columns="row", values="auc")
    diff = (d[ref] - d[other]).dropna() if ref in d and other in d else pd.Series(dtype=float)
    k, sd = len(diff), float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")
    if k < 2 or not np.isfinite(sd) or sd == 0:
        return dict(ref=ref, other=other, folds=k, sd_difference=sd, detectable=np.nan, patients=patients,
                    patients_needed=np.nan, delta=delta)
    effect = TTestPower().solve_power(nobs=k, alpha=alpha, power=power, alternative="two-sided")
    return dict(ref=ref, other=other, folds=k, mean_difference=float(diff.mean()), sd_difference=sd,
                detectable=float(effect * sd), patients=patients, delta=delta,
                patients_needed=int(np.ceil(patients * (effect * sd / delta) ** 2)))


def mean_roc(pred: pd.DataFrame, level: str, points: int = 101) -> pd.DataFrame:
    """Per row, the test ROC curves of the folds interpolated on a common false-positive grid: mean TPR and the
    fold spread (mean +- SD, kept within 0-1), as in the paper's Fig. 4."""
    from sklearn.metrics import roc_curve
    grid = np.linspace(0, 1, points)
    d = at_level(pred, level)
    d = d[d.split == "test"]
    parts = []
    for row, g in d.groupby("row", sort=False):
        tprs = []
        for _, f in g.groupby("fold"):
            if f.y.nunique() == 2:
                fpr, tpr, _ = roc_curve(f.y, f.score)
                tprs.append(np.interp(grid, fpr, tpr))
        if tprs:
            t = np.array(tprs)
            t[:, 0] = 0.0
            sd = t.std(0)
            parts.append(pd.DataFrame(dict(row=row, level=level, fpr=grid, tpr=t.mean(0),
                                           low=np.clip(t.mean(0) - sd, 0, 1), high=np.clip(t.mean(0) + sd, 0, 1))))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["row", "level", "fpr", "tpr", "low", "high"])


def pooled_target(figure: str, summ: pd.DataFrame, pred: pd.DataFrame, row: str, metric: str, goal: float) -> Target:
    """A patient-level metric pooled out of fold, with its patient-bootstrap interval, as a target row."""
    r = summ.query("row == @row and level == 'patient' and metric == @metric")
    r = r.iloc[0] if len(r) else pd.Series(dict(mean=np.nan, ci_low=np.nan, ci_high=np.nan))
    n = pred.query("split == 'test' and row == @row").subject.nunique()
    return Target(figure, r["mean"], ">=", goal, r["ci_low"], r["ci_high"], n, "patient bootstrap, 95 %")


def paired_target(figure: str, pred: pd.DataFrame, other: str, seed) -> Target:
    """SSLHF's pooled patient AUC minus `other`'s with its paired patient-bootstrap interval, as a target row."""
    d, lo, hi, n = paired_auc(pred, "SSLHF", other, seed=seed)
    return Target(figure, d, ">", 0.0, lo, hi, n, "paired patient bootstrap, 95 %")


def collapsed_runs(pred: pd.DataFrame, by: list[str]) -> int:
    """(row, fold) runs whose test scores are near-constant (SD < 0.03): a classifier that learnt nothing."""
    test = pred[pred.split == "test"]
    return int((test.groupby(by).score.std() < 0.03).sum())


def phantom_checks(pred: pd.DataFrame, summ: pd.DataFrame, rows: list[str], gate: pd.Series, seed) -> list:
    """The paper's AUC and accuracy, SSLHF against every other row, no collapsed run, and the proxy's gate."""
    full = pred[pred.fraction == 1.0]
    return [*[pooled_target(f"SSLHF patient {m.upper()}", summ[summ.fraction == 1.0], pred, "SSLHF", m, goal)
              for m, goal in (("auc", 0.85), ("acc", 0.82))],
            *[paired_target(f"SSLHF minus {r} (patient AUC)", full, r, seed) for r in rows if r != "SSLHF"],
            ("(row, fold) runs with near-constant test scores (SD < 0.03)",
             collapsed_runs(pred, ["row", "fold", "fraction"]), "<=", 0),
            ("gate: proxy minus random encoder, probe AUC on validation",
             gate.get("SSLHF proxy", np.nan) - gate.get("random", np.nan), ">", 0.0)]
