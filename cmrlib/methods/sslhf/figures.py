"""SSLHF's figures: the cohort's LVEF by phenotype around the 50 % rule, the proxy's restorations (the paper's
Fig. 3), mean ROC curves at patch and patient level (Fig. 4), and the learning curve as labels get scarce."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .data import HFREF_BELOW


def ef_figure(labels: pd.DataFrame, phenotype: pd.Series | None = None) -> Figure:
    """Measured LVEF of the HF patients (by phenotype when known) with the 50 % line, and measured against true
    LVEF: how many labels sit on the other side of the truth."""
    has_truth = labels.lvef_true.notna().any()
    fig, axes = plt.subplots(1, 2 if has_truth else 1, figsize=(8.5 if has_truth else 4.5, 3.2), squeeze=False)
    a = axes[0, 0]
    bins = np.arange(10, 86, 2.5)
    groups = labels.groupby(phenotype.reindex(labels.subject).to_numpy()) if phenotype is not None else [("HF", labels)]
    for name, g in groups:
        a.hist(g.lvef, bins=bins, alpha=0.6, label=f"{name} phenotype (n={len(g)})" if phenotype is not None else None)
    a.axvline(HFREF_BELOW, color="k", ls="--", lw=1)
    a.set(xlabel="measured LVEF (%)", ylabel="patients", title="HFrEF below the line, HFpEF above")
    if phenotype is not None:
        a.legend(fontsize=7)
    if has_truth:
        b = axes[0, 1]
        flipped = (labels.lvef_true < HFREF_BELOW) != (labels.lvef < HFREF_BELOW)
        b.scatter(labels.lvef_true, labels.lvef, s=10, c=np.where(flipped, "tab:red", "tab:gray"))
        b.axvline(HFREF_BELOW, color="k", ls="--", lw=0.8), b.axhline(HFREF_BELOW, color="k", ls="--", lw=0.8)
        b.set(xlabel="true LVEF (%)", ylabel="measured LVEF (%)",
              title=f"{int(flipped.sum())} labels on the other side of the truth (red)")
    fig.tight_layout()
    return fig


def restoration_figure(cases) -> Figure:
    """Rows of (title, original frame, corrupted frame, restored frame): a spatial and a temporal corruption."""
    fig, axes = plt.subplots(len(cases), 3, figsize=(6.6, 2.3 * len(cases)), squeeze=False)
    for ax_row, (title, *frames) in zip(axes, cases):
        lo, hi = np.percentile(frames[0], [1, 99])
        for a, f, name in zip(ax_row, frames, ("original", "corrupted", "restored")):
            a.imshow(f, cmap="gray", vmin=lo, vmax=hi)
            a.set_title(f"{title}: {name}" if name == "original" else name, fontsize=8)
            a.set_xticks([]), a.set_yticks([])
    fig.tight_layout()
    return fig


def roc_figure(roc: pd.DataFrame, aucs: pd.DataFrame) -> Figure:
    """Mean test ROC over the folds per row (band: fold SD), patch level left and patient level right; the legend
    gives each row's mean AUC."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4))
    for ax, level in zip(axes, ("patch", "patient")):
        d = roc[roc.level == level]
        for row, g in d.groupby("row", sort=False):
            m = aucs[(aucs.row == row) & (aucs.level == level) & (aucs.metric == "auc")]["mean"]
            line, = ax.plot(g.fpr, g.tpr, lw=1.6 if row == "SSLHF" else 1.0,
                            label=f"{row} (AUC {m.iloc[0]:.2f})" if len(m) else row)
            if row == "SSLHF":
                ax.fill_between(g.fpr, g.low, g.high, color=line.get_color(), alpha=0.15)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel="1 - specificity", ylabel="sensitivity (HFrEF)", title=f"{level} level (test folds)")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def learning_curve_figure(summ: pd.DataFrame, n_patients: pd.Series) -> Figure:
    """Patient-level test AUC (mean over folds, 95 % CI) against the labelled training patients, per row."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    d = summ[(summ.level == "patient") & (summ.metric == "auc")]
    for row, g in d.groupby("row", sort=False):
        g = g.sort_values("fraction")
        x = n_patients.reindex(g.fraction).to_numpy()
        ax.errorbar(x, g["mean"], yerr=[g["mean"] - g.ci_low, g.ci_high - g["mean"]], fmt="o-", capsize=3, label=row)
    ax.set(xlabel="labelled training patients per fold", ylabel="patient-level AUC (test)", ylim=(0.4, 1.02))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def real_figure(real: pd.DataFrame, phantom: pd.DataFrame | None, rows) -> Figure:
    """Patient-level test AUC per row (mean over folds, 95 % CI): the real patients, the phantom (when run) and
    the paper's value, one line of points per row; 0.5 marks chance."""
    from .evaluate import PAPER

    fig, ax = plt.subplots(figsize=(6.2, 0.55 * len(rows) + 1.3))
    sources = [("real patients", real, "tab:red", -0.18), ("phantom", phantom, "tab:blue", 0.0)]
    for i, row in enumerate(rows):
        for j, (name, summ, color, dy) in enumerate(sources):
            if summ is None:
                continue
            s = summ[(summ.row == row) & (summ.level == "patient") & (summ.metric == "auc")]
            if "fraction" in s:
                s = s[s.fraction == 1.0]
            if len(s) and np.isfinite(s["mean"].iloc[0]):
                m, lo, hi = s[["mean", "ci_low", "ci_high"]].iloc[0]
                ax.errorbar(m, i + dy, xerr=[[m - lo], [hi - m]], fmt="o", color=color, capsize=3,
                            label=name if i == 0 else None)
        if row in PAPER.index:
            ax.plot(PAPER.loc[row, ("patient", "auc")], i + 0.18, "k^", label="paper" if i == 0 else None)
    ax.axvline(0.5, color="k", ls=":", lw=0.8)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set(xlabel="patient-level AUC, test folds (95 % CI)", xlim=(0.0, 1.02))
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


# each figure's caption, beside the drawing it describes (`Study.figure` writes it with the figure)
CAPTIONS = {
    "05_lvef": "Heart-failure cohort of notebook 05: measured LVEF by phantom phenotype with the 50 % rule "
               "(left), and measured against true LVEF (right; red: labels on the other side of the truth).",
    "05_roc": "SSLHF Fig. 4: mean test ROC curves over the five folds at patch level (left) and patient "
              "level (right) for SSLHF, its ablations and the 3D baselines; band: SSLHF's fold SD.",
    "05_restoration": "SSLHF Fig. 3: a pool patch (ED frame) with local shuffling and patch covering, and a"
                      " frame replaced by noise, each with the proxy's restoration.",
    "05_learning_curve": "Patient-level test AUC (pooled over five folds, patient-bootstrap 95 % CI) of "
                         "SSLHF and the no-proxy ablation against the number of labelled training patients "
                         "per fold.",
    "05_real_patients": "Patient-level test AUC (pooled over five folds, patient-bootstrap 95 % CI) on {n} "
                        "real ACDC SAX cines (reduced vs preserved LVEF) beside the phantom's and the "
                        "paper's, per row.",
}
