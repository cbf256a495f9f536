"""Predicted curves against the label curve, and the aFD table as a figure."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .curves import label_curve


def _scaled(c: np.ndarray) -> np.ndarray:
    """Min-max scale a curve to [0, 1] so volumes (mL), areas and regressed curves share one axis."""
    c = np.asarray(c, dtype=float)
    return (c - c.min()) / max(float(np.ptp(c)), 1e-9)


def curves_figure(df: pd.DataFrame, n: int = 4, delta: float = 3.0, upsilon: float = 1 / 3,
                  mark_method: str | None = None, title: str = "test cine", reference: str = "true"):
    """Predicted (scaled) vs label curves for the first `n` cines that kept curves (see `evaluate(keep_curves=)`),
    with the reference ED/ES when known (`reference` names it: true, pseudo) and the frames `mark_method` picked."""
    import matplotlib.pyplot as plt

    from ...plots import curve_plot
    kept = df[df["curve"].notna()] if "curve" in df else df.iloc[:0]
    ids = list(dict.fromkeys(kept["cine_id"]))[:n]
    fig, axes = plt.subplots(1, max(len(ids), 1), figsize=(4.2 * max(len(ids), 1), 3.2), squeeze=False)
    for k, (ax, cid) in enumerate(zip(axes[0], ids)):
        g = kept[kept["cine_id"] == cid]
        r = g.iloc[0]
        curves = {}
        if not pd.isna(r["ed"]):
            curves["label (eq. 4)"] = label_curve(r["n_frames"], r["ed"], r["es"], delta, upsilon)
        curves.update({m: _scaled(c) for m, c in zip(g["method"], g["curve"])})
        marks = {} if pd.isna(r["ed"]) else {f"ED {reference}": r["ed"], f"ES {reference}": r["es"]}
        if mark_method is not None and mark_method in set(g["method"]):
            p = g[g["method"] == mark_method].iloc[0]
            marks.update({f"ED {mark_method}": p["ed_pred"], f"ES {mark_method}": p["es_pred"]})
        name = r["cine"] if "cine" in g else f"{title} {k + 1}"
        curve_plot(ax, curves, marks=marks, ylabel="curve (scaled to [0, 1])" if k == 0 else "",
                   title=f"{name} ({r['view']}, {r['n_frames']} frames)")
    fig.tight_layout()
    return fig


def afd_figure(table: pd.DataFrame):
    """Bar chart of aFD per view and method (whiskers: SD, clipped at 0), ED and ES side by side."""
    import matplotlib.pyplot as plt
    methods, views = list(dict.fromkeys(table["method"])), list(dict.fromkeys(table["view"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    w = 0.8 / max(len(methods), 1)
    for ax, ph in zip(axes, ("ED", "ES")):
        for j, m in enumerate(methods):
            t = table[table["method"] == m].set_index("view").reindex(views)
            mean, sd = t[f"aFD_{ph}"].to_numpy(float), t[f"SD_{ph}"].fillna(0).to_numpy(float)
            ax.bar(np.arange(len(views)) + (j - (len(methods) - 1) / 2) * w, mean, w, label=m,
                   yerr=[np.minimum(sd, mean), sd], capsize=2)
        ax.set_xticks(np.arange(len(views)), views)
        ax.set_title(f"{ph}: mean absolute frame difference", fontsize=10)
    axes[0].set_ylabel("aFD (frames)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def real_figure(real: pd.DataFrame, phantom: pd.DataFrame | None = None):
    """aFD per method on real patients (95 % CI), the paper's value and, where given, the phantom test split's value
    of the same network: where the models stand on patients, beside where they stood on the phantom."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(real) + 1.6), sharey=True)
    y = np.arange(len(real))[::-1]
    for ax, ph in zip(axes, ("ED", "ES")):
        mean = real[f"aFD_{ph}"].to_numpy(float)
        lo, hi = real[f"{ph}_low"].to_numpy(float), real[f"{ph}_high"].to_numpy(float)
        ax.errorbar(mean, y, xerr=[mean - np.nan_to_num(lo, nan=mean), np.nan_to_num(hi, nan=mean) - mean], fmt="o",
                    color="tab:blue", capsize=3, label="real patients (95 % CI)")
        ax.scatter(real[f"paper_{ph}"], y, marker="x", color="k", label="paper", zorder=3)
        if phantom is not None:
            ph_val = [phantom[f"aFD_{ph}"].get(m.split(" (")[0], np.nan) for m in real["method"]]
            ax.scatter(ph_val, y, marker="s", facecolors="none", edgecolors="tab:orange", label="phantom test split")
        ax.set_title(ph, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, real["method"])
    fig.supxlabel("mean absolute frame difference (frames)", fontsize=10, y=0.7 / fig.get_figheight())
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.9 / fig.get_figheight(), 1, 1))
    return fig


# each figure's caption, beside the drawing it describes (`Study.figure` writes it with the figure)
CAPTIONS = {
    "02_curves": "ED/ES methods' frame curves on test cines, with the true ED and ES marked",
    "02_afd": "average absolute frame difference of each ED/ES method per view (whiskers: SD)",
    "02_real_afd": "ED/ES detectors on {n} real ACDC SAX cines (cyclically shifted; fine-tuned rows scored "
                   "on held-out folds) with 95 % CIs, beside the paper's and the phantom test split's aFD",
    "02_ukbb_curves": "ED/ES detectors on the UK Biobank demo's long-axis cines, with the frames the 4CH "
                      "pseudo-labels imply (largest and smallest LV area)",
}
