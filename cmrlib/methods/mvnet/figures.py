"""Error distributions per stage, the displacement error, the convention heat map and a tracking example."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ...measure import mv_displacement
from .evaluate import _apex_side
from .geometry import STAGES


def spatial_figure(frames: pd.DataFrame):
    """Per view: point error, valve-angle error and displacement error by stage (the paper's Fig. 4 analogue)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    views = list(dict.fromkeys(frames["view"]))
    cols = (("err_mm", "Euclidean error (mm)"), ("angle_deg", "valve-line angle error (°)"),
            ("disp_err_mm", "displacement error (mm)"))
    fig, axes = plt.subplots(len(views), 3, figsize=(11, 3.2 * len(views)), squeeze=False, constrained_layout=True)
    for i, v in enumerate(views):
        f = frames[frames["view"] == v]
        for j, (c, name) in enumerate(cols):
            ax = axes[i, j]
            sns.boxplot(data=f, x="stage", y=c, ax=ax, showfliers=False, color="tab:blue", width=0.5)
            if c == "disp_err_mm":
                ax.axhline(0, color="0.4", lw=0.8, ls=":")
            ax.set_title(f"{v}: {name}", fontsize=9)
            ax.set_xlabel("")
            ax.set_ylabel(name if j == 0 else "")
    return fig


def displacement_figure(frames: pd.DataFrame, stages: Sequence[str] = STAGES, n_bins: int = 20):
    """Displacement error over the cycle (mean +- SD per phase bin) per view and stage (Fig. 5 analogue)."""
    import matplotlib.pyplot as plt

    views = list(dict.fromkeys(frames["view"]))
    fig, axes = plt.subplots(1, len(views), figsize=(5 * len(views), 3.2), squeeze=False, constrained_layout=True)
    n = frames.groupby(["subject", "view", "stage"])["frame"].transform("max") + 1
    f = frames.assign(phase=np.minimum((frames["frame"] / n * n_bins).astype(int), n_bins - 1) / n_bins)
    for ax, v in zip(axes[0], views):
        for s in stages:
            g = f[(f["view"] == v) & (f["stage"] == s)].groupby("phase")["disp_err_mm"].agg(["mean", "std"])
            ax.plot(g.index, g["mean"], marker=".", label=s)
            ax.fill_between(g.index, g["mean"] - g["std"], g["mean"] + g["std"], alpha=0.15)
        ax.axhline(0, color="0.4", lw=0.8, ls=":")
        ax.set_title(f"{v}: displacement error (auto − ref) over the cine", fontsize=9)
        ax.set_xlabel("fraction of the cine")
        ax.set_ylabel("mm")
        ax.legend(fontsize=7)
    return fig


def heatmap_figure(mat: pd.DataFrame, values: Sequence[str] = ("err_mm", "abs_disp_err_mm")):
    """Heat maps of `convention_matrix` values (rows: trained on, columns: tested on)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, len(values), figsize=(4.2 * len(values), 3.4), squeeze=False, constrained_layout=True)
    for ax, v in zip(axes[0], values):
        tab = mat.pivot(index="trained_on", columns="tested_on", values=v)
        sns.heatmap(tab, annot=True, fmt=".2f", cmap="viridis", ax=ax, cbar_kws=dict(label="mm"))
        ax.set_title(v.replace("_", " "), fontsize=9)
    return fig


def tracking_figure(pixels: np.ndarray, tracks: dict[str, np.ndarray], spacing: Sequence[float],
                    frames: Sequence[int] | None = None, title: str = "", ed: int = 0):
    """A cine's frames with tracked points (one marker per set) and the displacement curves below."""
    import matplotlib.pyplot as plt

    from ...plots import curve_plot, overlay

    T = len(pixels)
    frames = list(frames) if frames is not None else [int(round(x)) for x in np.linspace(0, T - 1, 4)]
    fig = plt.figure(figsize=(3 * len(frames), 5.8), constrained_layout=True)
    gs = fig.add_gridspec(2, len(frames), height_ratios=(1.3, 1))
    for j, f in enumerate(frames):
        overlay(fig.add_subplot(gs[0, j]), pixels[f], points={k: v[f] for k, v in tracks.items()},
                title=f"{title} frame {f}".strip())
    curves = {k: mv_displacement(np.roll(v, -ed, 0), spacing, 0, _apex_side(v, spacing, ed)) for k, v in tracks.items()}
    curve_plot(fig.add_subplot(gs[1, :]), curves, ylabel="MV displacement (mm)", title=f"{title} displacement".strip())
    return fig


# each figure's caption, beside the drawing it describes (`Study.figure` writes it with the figure)
CAPTIONS = {
    "03_real": "MVnet tracked valve points on a real cine, with the annulus its pseudo-labels imply",
    "03_real_without_reference": "MVnet tracked valve points on a real cine (no reference)",
    "03_spatial_errors": "MVnet point errors per stage and view (the paper's Fig. 4/5)",
    "03_displacement_error": "MVnet valve displacement error per stage over the cycle",
    "03_tracking_example": "MVnet tracked valve points on a test cine, per stage",
    "03_agreement": "MAPSE and e' of MVnet and of a second observer against observer 1",
    "03_conventions": "MVnet errors trained on one annotation convention and tested on another (Fig. 6)",
}
