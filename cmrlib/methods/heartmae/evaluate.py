"""HeartMAE's tables from test-subject predictions: Table 1 (EF MAE), every regressed measure's scaled MAE with the
tasks each model wins and a Wilcoxon signed-rank test (Fig. S1), AP and AUROC per condition (Fig. 2), Table 2
(extracardiac MAE and Pearson r). Every number carries a percentile bootstrap CI over test subjects (seeded)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pingouin as pg

from ...stats import StatsError, classification_metrics, fmt_ci, not_testable
from ...utils import rng
from .learner import BASE
from .tasks import EF_COLUMNS

# the paper's UK Biobank test-set numbers (Table 1: EF MAE in EF points; Table 2: MAE and Pearson r)
PAPER_TABLE1 = pd.DataFrame({"LVEF": [4.14, 3.34, 3.14, 3.19, 3.15, 3.09], "LAEF": [5.93, np.nan, 4.32, 4.38, 4.31, 4.26],
                             "RVEF": [4.07, np.nan, 3.03, 3.09, 3.06, 2.98], "RAEF": [6.33, np.nan, 5.39, 5.42, 5.31, 5.25]},
                            index=["MAE-ViT-L (Kinetics)", "mViT-B (Shad et al.)", "MAE-ViT-B", "MAE-95", "MAE-tube",
                                   "HeartMAE"])
PAPER_TABLE2 = pd.DataFrame({"age MAE": [2.90, 2.89, 2.81, 2.79, 4.70], "age r": [0.88, 0.88, 0.89, 0.89, 0.66],
                             "BMI MAE": [0.95, 0.96, 0.94, 0.95, 1.48], "BMI r": [0.95, 0.95, 0.96, 0.95, 0.89],
                             "DBP MAE": [6.58, 6.57, 6.53, 6.57, 7.16], "DBP r": [0.51, 0.51, 0.52, 0.52, 0.36],
                             "SBP MAE": [10.91, 11.01, 10.95, 10.71, 13.10], "SBP r": [0.63, 0.61, 0.62, 0.64, 0.28]},
                            index=["MAE-ViT-B", "MAE-95", "MAE-tube", "HeartMAE", "MAE-ViT-L (Kinetics)"])
PAPER_FEATURES = dict(tasks=99, heartmae_wins=86, lvef_mae=3.09)


def boot_mae_ci(err: np.ndarray, n_boot: int, seed) -> tuple[float, float]:
    """Percentile 95 % CI of the mean absolute error over resampled subjects."""
    if n_boot == 0 or len(err) < 2:
        return np.nan, np.nan
    idx = rng(seed).integers(0, len(err), (n_boot, len(err)))
    means = np.abs(err[idx]).mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def regression_metrics(preds: Mapping[str, pd.DataFrame], truth: pd.DataFrame, scale: pd.Series,
                       n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per model x task: n, MAE with CI, MAE / training SD (scaled MAE, comparable across measures) and
    Pearson r, on the subjects both tables hold."""
    rows = []
    for model, p in preds.items():
        for task in [c for c in p.columns if c in truth.columns]:
            both = pd.concat([p[task].rename("p"), truth[task].rename("t")], axis=1, join="inner").dropna()
            if len(both) < 2:
                continue
            err = (both["p"] - both["t"]).to_numpy()
            lo, hi = boot_mae_ci(err, n_boot, seed)
            r = np.corrcoef(both["p"], both["t"])[0, 1] if both["p"].std() > 0 else np.nan
            rows.append(dict(model=model, task=task, n=len(both), MAE=float(np.abs(err).mean()), MAE_low=lo,
                             MAE_high=hi, scaled_MAE=float(np.abs(err).mean() / scale[task]), r=float(r)))
    return pd.DataFrame(rows)


def with_ci(df: pd.DataFrame, value: str, digits: int = 2) -> pd.Series:
    """'value (low-high)' strings of a metric column and its `_low` / `_high` columns."""
    return pd.Series([fmt_ci(v, lo, hi, digits) for v, lo, hi in
                      zip(df[value], df[f"{value}_low"], df[f"{value}_high"])], index=df.index)


def table1(reg: pd.DataFrame, columns: Sequence[str] = EF_COLUMNS) -> pd.DataFrame:
    """Table 1: EF MAE (EF points) with its CI per model and chamber."""
    ef = reg[reg["task"].isin(columns)].assign(cell=lambda d: with_ci(d, "MAE"))
    return ef.pivot(index="model", columns="task", values="cell").reindex(columns=list(columns))


def wins(reg: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """For each of `models`: the regressed tasks on which its MAE is the lowest among them."""
    sub = reg[reg["model"].isin(models)].pivot(index="task", columns="model", values="MAE")[list(models)].dropna()
    best = sub.idxmin(axis=1)
    return pd.DataFrame({"model": list(models), "tasks won": [int((best == m).sum()) for m in models],
                         "of tasks": len(sub)})


def wilcoxon(reg: pd.DataFrame, a: str = "HeartMAE", b: str = BASE) -> dict:
    """Wilcoxon signed-rank test (pingouin) of model a's against model b's scaled MAE over all regressed tasks."""
    sub = reg.pivot(index="task", columns="model", values="scaled_MAE")
    if a not in sub or b not in sub:
        raise StatsError(f"need both {a} and {b} in the regression table")
    pair = sub[[a, b]].dropna()
    res = pg.wilcoxon(pair[a], pair[b]).rename(columns=lambda c: c.replace("-", "_")).iloc[0]  # names vary by version
    return dict(a=a, b=b, tasks=len(pair), median_difference=float((pair[a] - pair[b]).median()),
                a_better=int((pair[a] < pair[b]).sum()), W=float(res["W_val"]), p=float(res["p_val"]))


def classification_metrics_table(preds: Mapping[str, pd.DataFrame], truth: pd.DataFrame, tasks: Sequence[str],
                                 n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """AP and AUROC with bootstrap CIs per model x condition (stats.classification_metrics); a condition with one
    class only among the test subjects gets NaN and says so."""
    rows = []
    for model, p in preds.items():
        for task in [t for t in tasks if t in p.columns and t in truth.columns]:
            both = pd.concat([p[task].rename("p"), truth[task].rename("t")], axis=1, join="inner").dropna()
            row = dict(model=model, task=task, n=len(both), positives=int(both["t"].sum()))
            try:
                m = classification_metrics(both["t"].astype(int), both["p"], n_boot=n_boot, seed=seed)
            except StatsError as e:
                rows.append(dict(row, note=not_testable(e)))
                continue
            for key, name in (("pr_auc", "AP"), ("roc_auc", "AUROC")):
                row.update({name: m.loc[key, "value"], f"{name}_low": m.loc[key, "ci_low"],
                            f"{name}_high": m.loc[key, "ci_high"]})
            rows.append(dict(row, note=""))
    return pd.DataFrame(rows)


def table2(reg: pd.DataFrame, tasks: Sequence[str] = ("age", "BMI", "DBP", "SBP")) -> pd.DataFrame:
    """Table 2: extracardiac MAE (with CI) and Pearson r per model, columns '<task> MAE', '<task> r'."""
    sub = reg[reg["task"].isin(tasks)].assign(cell=lambda d: with_ci(d, "MAE"), r=lambda d: d["r"].round(2))
    mae = sub.pivot(index="model", columns="task", values="cell").add_suffix(" MAE")
    r = sub.pivot(index="model", columns="task", values="r").add_suffix(" r")
    return mae.join(r)[[f"{t} {k}" for t in tasks for k in ("MAE", "r") if f"{t} {k}" in mae.join(r)]]


def condition_table(cls: pd.DataFrame, metric: str = "AP") -> pd.DataFrame:
    """Fig. 2 as a table: `metric` with its CI per model (rows) and condition (columns)."""
    d = cls.dropna(subset=[metric]).assign(cell=lambda d: with_ci(d, metric))
    return d.pivot(index="model", columns="task", values="cell").reindex(columns=list(dict.fromkeys(cls["task"])))


def beside_paper(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Our rows (phantom test subjects, with CIs) above the paper's (UK Biobank), labelled by a `data` column."""
    a = ours.rename_axis("model").reset_index()
    b = paper.rename_axis("model").reset_index()
    a.insert(0, "data", "phantom (this run)")
    b.insert(0, "data", "UK Biobank (paper)")
    return pd.concat([a, b.astype(object)], ignore_index=True)


def evaluate(preds: Mapping[str, pd.DataFrame], truth: pd.DataFrame, kinds: Mapping[str, str], scale: pd.Series,
             n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(regression rows, classification rows) of every model's test predictions against the truth."""
    reg_tasks = [t for t, k in kinds.items() if k == "reg"]
    cls_tasks = [t for t, k in kinds.items() if k == "cls"]
    reg = regression_metrics({m: p[[c for c in p.columns if c in reg_tasks]] for m, p in preds.items()}, truth,
                             scale, n_boot, seed)
    return reg, classification_metrics_table(preds, truth, cls_tasks, n_boot, seed)
