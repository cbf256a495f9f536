"""Agreement of every method's measures with the reference and with each other (notebook 07), from run-folder tables.

Everything meets in one tidy long table (`LONG_COLUMNS`): one row per subject x measure x method, the method's value
beside the reference value of the same subject. Differences are method - reference throughout (`cmrlib.stats`).
Every method notebook that measures joins by writing `NN/measures_long.csv` with these columns (the run-folder
contract; `collect` reads nothing else).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .. import plots, stats
from ..longform import (LONG_COLUMNS, PHANTOM_REFERENCES, STAGE_METHODS, from_columns, from_table1,
                        implied_volumes, view_of)
from ..measure import UNITS, MeasureError, average_views, fill_gaps, mv_displacement, valve_measures, valve_track
from ..store import CohortStore

__all__ = ["LONG_COLUMNS", "view_of", "from_table1", "from_columns", "implied_volumes", "mask_mapse", "collect",
           "summarise", "method_vs_method", "by_condition", "yardstick", "icc_heatmap", "headline_figure"]

HEADLINE = ("LVEDV", "LVESV", "LVEF", "LVM", "RVEF", "LAVmax", "MAPSE", "e_prime")


MASK_MEASURES = ("MAPSE", "s_prime", "e_prime", "a_prime")  # what `mask_mapse` reads from the valve track


def mask_mapse(store: CohortStore, labels: Mapping[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MAPSE (and s', e', a') per subject from long-axis label cines (cine_id -> labels): the LV/LA border's ends as
    hinge points in every frame, their displacement toward the apex averaged over the 2CH and 4CH views; and the
    cines left out, with the reason."""
    by_subject: dict[str, list] = {}
    errors = []
    for cid, lab in labels.items():
        c = store.read(cid)
        try:
            d = mv_displacement(fill_gaps(valve_track(lab)), c.spacing[-2:], int(c.ed))
        except MeasureError as e:
            errors.append(dict(subject=str(c.subject), view=c.view, error=str(e)))
            continue
        by_subject.setdefault(str(c.subject), []).append((d, c.frame_interval, int(c.ed)))
    rows = []
    for sub, views in sorted(by_subject.items()):
        d = average_views(*[v[0] for v in views])
        m = valve_measures(d, views[0][1], views[0][2])
        rows.append(dict(subject=sub, **{k: m[k] for k in MASK_MEASURES}))
    return (pd.DataFrame(rows, columns=["subject", *MASK_MEASURES]),
            pd.DataFrame(errors, columns=["subject", "view", "error"]))


def collect(run_dir: str | Path) -> pd.DataFrame:
    """The long table of every measure a run's notebooks wrote: each method notebook's `NN/measures_long.csv`
    (01 segmentation, 02 ED/ES, 03 MVnet, 06 HeartMAE), the one shape the run folder hands to the analysis."""
    parts = [pd.read_csv(f)[LONG_COLUMNS] for f in sorted(Path(run_dir).glob("[0-9][0-9]/measures_long.csv"))]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=LONG_COLUMNS)


def _groups(long: pd.DataFrame, by: Sequence[str]):
    return long.dropna(subset=["value", "reference"]).groupby(list(by), sort=False, dropna=False)


def summarise(long: pd.DataFrame, by: Sequence[str] = ("cohort", "measure", "method"), min_n: int = 3) -> pd.DataFrame:
    """Every agreement statistic per group (`stats.agreement`); groups with fewer than `min_n` pairs or no spread
    keep a row with `n` and the reason in `note`."""
    rows = []
    for key, g in _groups(long, by):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True), unit=g["unit"].iloc[0],
                   reference_kind=g["reference_kind"].iloc[0], n=len(g))
        try:
            if len(g) < min_n:
                raise stats.StatsError(f"{len(g)} pair(s), fewer than {min_n}")
            row.update(stats.agreement(g["value"], g["reference"]), note="")
        except ValueError as e:  # StatsError, or pingouin on pairs without spread
            row["note"] = stats.not_testable(e)
        rows.append(row)
    return _with_columns(pd.DataFrame(rows), [*by, "unit", "reference_kind"])


def _with_columns(df: pd.DataFrame, head: list[str]) -> pd.DataFrame:
    """Every agreement column present (NaN where no group had enough pairs), the reason last."""
    return df.reindex(columns=[*head, *stats.AGREEMENT_COLUMNS, "note"])


def method_vs_method(long: pd.DataFrame, pairs: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """Agreement of two methods on the same subjects, per (measure, method a, method b): difference a - b."""
    rows = []
    for measure, a, b in pairs:
        w = long[long["measure"] == measure].pivot_table(index="subject", columns="method", values="value")
        if a not in w or b not in w:
            continue
        both = w[[a, b]].dropna()
        row = dict(measure=measure, method_a=a, method_b=b, unit=UNITS.get(measure, ""), n=len(both))
        try:
            row.update(stats.agreement(both[a], both[b]), note="")
        except ValueError as e:
            row["note"] = stats.not_testable(e)
        rows.append(row)
    return _with_columns(pd.DataFrame(rows), ["measure", "method_a", "method_b", "unit"])


def by_condition(long: pd.DataFrame, min_n: int = 3) -> pd.DataFrame:
    """Bias with its CI and MAE per cohort x measure x method x condition (ICC needs a spread a condition rarely has)."""
    rows = []
    for (cohort, measure, method, cond), g in _groups(long, ("cohort", "measure", "method", "condition")):
        d = (g["value"] - g["reference"]).to_numpy()
        m, lo, hi = stats.mean_ci(d) if len(d) >= min_n else (float(d.mean()), np.nan, np.nan)
        rows.append(dict(cohort=cohort, measure=measure, method=method, condition=cond, n=len(d), bias=m,
                         bias_low=lo, bias_high=hi, mae=float(np.abs(d).mean())))
    return pd.DataFrame(rows, columns=["cohort", "measure", "method", "condition", "n", "bias", "bias_low",
                                       "bias_high", "mae"])


def yardstick(summary: pd.DataFrame, observer: str = "observer 2") -> pd.DataFrame:
    """Each method's limits-of-agreement width beside the second observer's on the same measure (ratio > 1: the
    method disagrees with the reference more than a second reader does)."""
    s = summary.dropna(subset=["loa_low"]).assign(width=lambda d: d["loa_high"] - d["loa_low"])
    obs = s[s["method"] == observer].set_index(["cohort", "measure"])["width"]
    out = s[s["method"] != observer].join(obs.rename("observer_width"), on=["cohort", "measure"], how="inner")
    out["width_ratio"] = out["width"] / out["observer_width"]
    return out[["cohort", "measure", "method", "n", "width", "observer_width", "width_ratio"]]


def icc_heatmap(summary: pd.DataFrame, cohort: str = "phantom", form: str = "icc2") -> Figure:
    """ICC (measure x method) of one cohort as an annotated heat map (the overview figure)."""
    s = summary[(summary["cohort"] == cohort)].dropna(subset=[form])
    grid = s.pivot_table(index="measure", columns="method", values=form, sort=False)
    if grid.empty:
        fig, ax = plt.subplots(figsize=(4, 2), constrained_layout=True)
        ax.text(0.5, 0.5, f"{cohort}: no measure with enough pairs for an ICC", ha="center", va="center")
        ax.set_axis_off()
        return fig
    fig, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 3, 0.32 * grid.shape[0] + 1.5), constrained_layout=True)
    sns.heatmap(grid, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax, annot_kws=dict(fontsize=7),
                cbar_kws=dict(label=f"ICC({'2' if form == 'icc2' else '3'},1)"))
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(f"{cohort}: {'absolute agreement' if form == 'icc2' else 'consistency'} with the reference",
                 fontsize=10)
    ax.tick_params(axis="x", labelrotation=30)
    return fig


def headline_figure(long: pd.DataFrame, chosen: Mapping[str, str], cohort: str = "phantom",
                    observer: str = "observer 2") -> Figure:
    """Regression (top) and Bland-Altman (bottom) per headline measure for its chosen method; the grey band is the
    second observer's limits of agreement where the run has one."""
    shown = {m: meth for m, meth in chosen.items()
             if len(long[(long.cohort == cohort) & (long.measure == m) & (long.method == meth)].dropna(
                 subset=["value", "reference"])) >= 3}
    fig, axes = plt.subplots(2, max(len(shown), 1), figsize=(3.4 * max(len(shown), 1), 6.4), squeeze=False,
                             constrained_layout=True)
    for j, (m, meth) in enumerate(shown.items()):
        g = long[(long.cohort == cohort) & (long.measure == m) & (long.method == meth)]
        unit = UNITS.get(m, "")
        plots.regression_plot(g["value"], g["reference"], ax=axes[0, j], units=unit, title=f"{m}: {meth}")
        plots.bland_altman_plot(g["value"], g["reference"], ax=axes[1, j], units=unit)
        o = long[(long.cohort == cohort) & (long.measure == m) & (long.method == observer)].dropna(
            subset=["value", "reference"])
        if len(o) >= 3:
            ba = stats.bland_altman(o["value"], o["reference"])
            axes[1, j].axhspan(ba["loa_low"], ba["loa_high"], color="0.85", zorder=0, label="observer 2 LoA")
            axes[1, j].legend(fontsize=6, loc="lower left")
    return fig
