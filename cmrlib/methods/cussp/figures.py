"""CUSSP's figures: the preprocessing steps (the paper's Fig. 8), ROC and precision-recall curves with the
operating point (Fig. 5), recall by MR grade, F1/AUC as the unlabelled pool grows and as the labels shrink."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...labels import LA
from ...record import Cine
from .valve import equalise_la, valve_patch


def preprocessing_figure(cases: Sequence[tuple[str, Cine, np.ndarray]], n_frames: int = 6) -> Figure:
    """Per case (title, 4CH cine, its segmentation): the ED frame with the valve line and the patch box, the frame
    equalised over the LA's range, and the patch at `n_frames` phases over the cycle."""
    fig, axes = plt.subplots(len(cases), 2 + n_frames, figsize=(1.6 * (2 + n_frames), 1.9 * len(cases)),
                             squeeze=False)
    for ax_row, (title, cine, labels) in zip(axes, cases):
        p = valve_patch(cine, labels)
        s = p.pixels.shape[-1]
        box = p.affine.inverse_points(np.array([[-.5, -.5], [s - .5, -.5], [s - .5, s - .5], [-.5, s - .5], [-.5, -.5]]))
        ax_row[0].imshow(cine.pixels[p.frame], cmap="gray")
        ax_row[0].plot(*box.T, "y-", lw=1)
        ax_row[0].plot(*p.valve.ends.T, "r-", lw=1.5)
        ax_row[0].set_title(f"{title}\nED, valve + patch", fontsize=7)
        ax_row[1].imshow(equalise_la(cine.pixels, labels == LA)[p.frame], cmap="gray", vmin=0, vmax=1)
        ax_row[1].set_title("LA-equalised", fontsize=7)
        for k, t in enumerate(np.linspace(0, cine.n_frames, n_frames, endpoint=False).astype(int)):
            ax_row[2 + k].imshow(p.pixels[(p.frame + t) % cine.n_frames], cmap="gray", vmin=0, vmax=1)
            ax_row[2 + k].set_title(f"patch, ED+{t}", fontsize=7)
    for a in axes.ravel():
        a.set_xticks([]), a.set_yticks([])
    fig.tight_layout()
    return fig


def roc_pr_figure(test: Mapping[str, tuple[np.ndarray, np.ndarray]], thr: Mapping[str, float]) -> Figure:
    """ROC and precision-recall curves of every row on the test cines, each with its validation-chosen operating
    point; the best row's point is annotated (recall, precision, F1, threshold) as in the paper."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.3))
    for row, (y, s) in test.items():
        y, s = np.asarray(y), np.asarray(s)
        fpr, tpr, _ = roc_curve(y, s)
        prec, rec, _ = precision_recall_curve(y, s)
        line, = a.plot(fpr, tpr, lw=1.2, label=row)
        b.plot(rec, prec, lw=1.2, color=line.get_color())
        p = s >= thr[row]
        tp, fp, fn = (p & (y == 1)).sum(), (p & (y == 0)).sum(), (~p & (y == 1)).sum()
        r_op, p_op = tp / max(tp + fn, 1), tp / max(tp + fp, 1)
        a.plot(fp / max((y == 0).sum(), 1), r_op, "o", color=line.get_color(), ms=5)
        b.plot(r_op, p_op, "o", color=line.get_color(), ms=5)
        if row == list(test)[-1]:
            f1 = 2 * tp / max(2 * tp + fp + fn, 1)
            b.annotate(f"({r_op:.2f}, {p_op:.2f}, {f1:.2f}, {thr[row]:.2f})", (r_op, p_op), fontsize=7,
                       xytext=(5, 5), textcoords="offset points")
    a.plot([0, 1], [0, 1], "k:", lw=0.8)
    b.axhline(np.mean(next(iter(test.values()))[0]), color="k", ls=":", lw=0.8)
    a.set(xlabel="1 - specificity", ylabel="sensitivity (recall)", title="ROC (test)")
    b.set(xlabel="recall", ylabel="precision", title="precision-recall (test); dotted: prevalence")
    a.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def grade_figure(by_grade: pd.DataFrame) -> Figure:
    """Recall per MR grade for every row: does a model find mild (grade 1) regurgitation, or only severe?"""
    piv = by_grade.pivot(index="row", columns="grade", values="recall").reindex(by_grade.row.unique())
    n = by_grade.groupby("grade").n.first()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    piv.plot.bar(ax=ax, rot=30)
    ax.set(ylabel="recall on test", ylim=(0, 1.05), xlabel="")
    ax.legend([f"grade {g} (n={n[g]})" for g in piv.columns], fontsize=7)
    fig.tight_layout()
    return fig


def pool_figure(curve: pd.DataFrame) -> Figure:
    """F1 and ROC-AUC (test, 95 % CI) of one row as the unlabelled pretraining pool grows."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, metric in zip(axes, ("f1", "roc_auc")):
        d = curve[curve.metric == metric].sort_values("pool_cines")
        ax.errorbar(d.pool_cines, d.value, yerr=[d.value - d.ci_low, d.ci_high - d.value], fmt="o-", capsize=3)
        ax.set(xlabel="unlabelled cines in pretraining", ylabel=metric.replace("roc_auc", "ROC-AUC").upper()
               if metric == "f1" else "ROC-AUC", ylim=(0, 1.02))
    fig.suptitle(f"{curve.row.iloc[0]} as the unlabelled pool grows", fontsize=9)
    fig.tight_layout()
    return fig


def budget_figure(budget: pd.DataFrame) -> Figure:
    """Test ROC-AUC and F1 of each row against its number of MR training cines: the mean over draws, the draws'
    range as a band (the label-budget curve)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("roc_auc", "f1")):
        for row, d in budget.groupby("row", sort=False):
            g = d.groupby("budget")[metric].agg(["mean", "min", "max"]).sort_index()
            line, = ax.plot(g.index, g["mean"], marker="o", label=row, lw=1.2, ms=3,
                            ls="--" if "random" in row else "-")
            ax.fill_between(g.index, g["min"], g["max"], color=line.get_color(), alpha=0.15, lw=0)
        ax.set(xscale="log", xlabel="MR cines in training (with their non-MR share)",
               ylabel="ROC-AUC" if metric == "roc_auc" else "F1", ylim=(0, 1.02))
        ax.set_xticks(sorted(budget.budget.unique()), [str(b) for b in sorted(budget.budget.unique())])
        ax.minorticks_off()
    axes[0].axhline(0.5, color="0.6", lw=0.8, ls=":")
    axes[1].legend(fontsize=6, loc="lower right")
    fig.suptitle("Label budget: pretrained vs random encoder vs supervised (test; mean and range over draws)",
                 fontsize=9)
    fig.tight_layout()
    return fig


# each figure's caption, beside the drawing it describes (`Study.figure` writes it with the figure)
CAPTIONS = {
    "04_roc_pr": "CUSSP Table 2 rows on the test split: ROC and precision-recall curves, dots at each row's"
                 " validation-chosen threshold; the last row's point is annotated (recall, precision, F1, "
                 "threshold) as in the paper's Fig. 5.",
    "04_preprocessing": "CUSSP preprocessing (the paper's Fig. 8): ED frame with the SVM valve line (red) "
                        "and the patch (yellow), the frame equalised over the LA's intensities, and the "
                        "valve patch over the cycle, for a severe and a mild MR subject and one without MR.",
    "04_recall_by_grade": "Recall on the test split by MR grade (1 mild, 2 moderate, 3 severe) for every "
                          "Table 2 row.",
    "04_pool_size": "CUSSP-SIAM-25 test F1 and ROC-AUC (95 % CI) against the number of unlabelled cines its"
                    " Barlow Twins encoder was pretrained on (0: random encoder), at equal pretraining "
                    "steps.",
    "04_label_budget": "Test ROC-AUC and F1 against the number of MR training cines (each with its share of"
                       " non-MR cines; mean and range over draws; the last point: every training cine): the"
                       " Siamese rows from the Barlow Twins encoder and from a random one, and the "
                       "supervised ResNet-18.",
    "04_real_patches": "CUSSP's preprocessing on real 4CH cines (no MR label): the valve line on the run's "
                       "segmentation (red), the patch (yellow), the LA-equalised frame, the patch over the "
                       "cycle",
}
