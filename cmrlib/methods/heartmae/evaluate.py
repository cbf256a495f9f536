"""HeartMAE's tables from test-subject predictions: Table 1 (EF MAE), every regressed measure's scaled MAE with the
tasks each model wins and a Wilcoxon signed-rank test (Fig. S1), AP and AUROC per condition (Fig. 2), Table 2
(extracardiac MAE and Pearson r). Every number carries a percentile bootstrap CI over test subjects (seeded)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pingouin as pg

from ...stats import StatsError, classification_metrics, fmt_ci, not_testable
from ...utils import rng
from .baselines import EXPERT, expert_features, logistic_probs
from .features import KINETICS
from .heads import fit_probe
from .learner import BASE, FAMILY, RANDOM
from .tasks import EF_COLUMNS, Targets

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


@dataclass(frozen=True)
class Probes:
    """The attention-MIL probes by (encoder, group), test predictions by encoder, the regression and classification
    tables, and the encoders in table order."""

    probes: dict
    preds: dict
    reg: pd.DataFrame
    cls: pd.DataFrame
    order: list


@dataclass(frozen=True)
class Cardiac:
    """The cardiac measures' rows of the regression table, the tasks each model wins and the Wilcoxon test."""

    reg: pd.DataFrame
    won: pd.DataFrame
    wilcoxon: dict


def fit_probes(bagged: Mapping[str, tuple], t: Targets, cfg, out, n_boot: int, seed) -> Probes:
    """An attention-MIL probe per encoder and task group on the training subjects (early stop on validation),
    scored once on test with bootstrap CIs."""
    y, role, subjects = t.y, t.role, t.subjects
    probes, preds = {}, {}
    for name, (h, mask, _) in bagged.items():
        parts = []
        for g in dict.fromkeys(t.groups.values()):
            tasks = [k for k in y.columns if t.groups[k] == g]
            probes[name, g] = fit_probe(h, mask, y.loc[subjects, tasks], t.kinds, role["train"], role["valid"], cfg,
                                        out)
            parts.append(probes[name, g].predict(h[role["test"]], mask[role["test"]], t.test_subjects))
        preds[name] = pd.concat(parts, axis=1)
    scale = y.loc[[subjects[i] for i in role["train"]]].std()
    reg, cls = evaluate(preds, y, t.kinds, scale, n_boot, seed)
    return Probes(probes, preds, reg, cls, [m for m in [*FAMILY, RANDOM, KINETICS] if m in preds])


def cardiac_wins(reg: pd.DataFrame, groups: Mapping[str, str]) -> Cardiac:
    """Tasks won per model and HeartMAE against MAE-ViT-B (Wilcoxon) over the cardiac measures."""
    reg = reg[reg["task"].map(groups) == "cardiac"]
    return Cardiac(reg, wins(reg, list(FAMILY)), wilcoxon(reg))


def expert_rows(measures: pd.DataFrame, t: Targets, tasks: list[str], n_boot: int, seed
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """The expert-features baseline of the conditions: a logistic regression on the segmentation measures, its
    scores on the test subjects; with the measures, the subjects it could not measure and each condition's C."""
    expert, bad = expert_features(measures)
    s, role = t.subjects, t.role
    kept = lambda rows: [s[i] for i in rows if s[i] in expert.index]
    probs, chosen = logistic_probs(expert, t.y[tasks], kept(role["train"]), kept(role["valid"]), kept(role["test"]))
    return classification_metrics_table({EXPERT: probs}, t.y, tasks, n_boot, seed), expert, bad, chosen


def phantom_checks(reg: pd.DataFrame, cardiac: Cardiac, pretext: pd.DataFrame, ridge: pd.DataFrame) -> list[tuple]:
    """The paper's phantom targets: HeartMAE's LVEF, the EF columns and cardiac measures it wins, every MAE against
    the random floor and the copy rule, and the features gate."""
    family = list(FAMILY)
    ef = reg[reg["task"].isin(EF_COLUMNS)].pivot(index="task", columns="model", values="MAE")
    mean_scaled = cardiac.reg.groupby("model")["scaled_MAE"].mean()
    won_by = cardiac.won.set_index("model")
    loss = lambda r, m: pretext.query("row == @r and model == @m").masked_loss.iloc[0]
    ridge_mae = lambda e: ridge.query("task == 'LVEF' and encoder == @e").valid_MAE.mean()
    return [("HeartMAE LVEF MAE (EF points)", ef.at["LVEF", "HeartMAE"], "<=", 3.09),
            ("EF columns where HeartMAE is best of the four", int((ef[family].idxmin(axis=1) == "HeartMAE").sum()),
             ">=", 3),
            ("share of cardiac measures HeartMAE wins", won_by.at["HeartMAE", "tasks won"]
             / won_by.at["HeartMAE", "of tasks"], ">", 0.5),
            *[(f"{m} mean scaled MAE minus the random floor", mean_scaled[m] - mean_scaled[RANDOM], "<", 0.0)
              for m in family],
            *[(f"{r} masked loss minus the copy rule's (validation)", loss(r, r) - loss(r, "copy rule"), "<", 0.0)
              for r in family if r in set(pretext.row)],
            ("HeartMAE ridge LVEF MAE minus the random encoder's (validation, EF points)",
             ridge_mae("HeartMAE") - ridge_mae(RANDOM), "<=", -2.0)]


def subject_feature_tables(bagged: Mapping[str, tuple], probes: Probes, t: Targets) -> dict[str, pd.DataFrame]:
    """Each encoder's pooled subject features (its first task group's probe attention), by table name: what
    notebook 08 clusters."""
    first, index = next(iter(dict.fromkeys(t.groups.values()))), pd.Index(t.subjects, name="subject")
    pooled = {name: probes.probes[name, first].pooled(h, mask)[0] for name, (h, mask, _) in bagged.items()}
    return {f"subject_features_{name.split(' ')[0]}": pd.DataFrame(z, index=index).add_prefix("f")
            for name, z in pooled.items()}


def measures_long(probes: Probes, t: Targets, conditions: Mapping[str, str]) -> pd.DataFrame:
    """HeartMAE's cardiac measures of the phantom's test subjects beside the generating values, in notebook 07's
    long shape."""
    from ...longform import PHANTOM_REFERENCES, from_columns

    cardiac = [k for k in probes.preds["HeartMAE"].columns if t.groups[k] == "cardiac"]
    wide = probes.preds["HeartMAE"][cardiac].add_suffix("_heartmae").join(
        t.y.loc[t.test_subjects, cardiac].add_suffix("_model"))
    return from_columns(wide.reset_index(), {"heartmae": "HeartMAE"}, "phantom", PHANTOM_REFERENCES["model"],
                        conditions, ref="model")
