"""HeartMAE's figures: the motion weight map over a cine, masked-clip reconstructions, pretraining curves, scaled
MAE per measure (Fig. S1), AP / AUROC per condition (Fig. 2) and the ABMIL attention over a subject's views."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ...models.mae_st import VideoMAE, patchify, target_frames, unpatchify


def flow_figure(frames: np.ndarray, weight: np.ndarray, title: str = "", n: int = 4):
    """`n` frames of one cine, then its motion map W alone and over the first frame."""
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    fig, axes = plt.subplots(1, n + 2, figsize=(2.1 * (n + 2), 2.4), constrained_layout=True)
    for ax, i in zip(axes, idx):
        ax.imshow(frames[i], cmap="gray")
        ax.set_title(f"frame {i}", fontsize=8)
    axes[n].imshow(weight, cmap="magma", vmin=0, vmax=1)
    axes[n].set_title("W (optical flow)", fontsize=8)
    axes[n + 1].imshow(frames[0], cmap="gray")
    axes[n + 1].imshow(weight, cmap="magma", alpha=0.45, vmin=0, vmax=1)
    axes[n + 1].set_title("1 + W weights these pixels", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


@torch.no_grad()
def reconstruct(model: VideoMAE, clip: torch.Tensor, ratio: float, masking: str, seed: int = 0,
                target: str = "dataset"):
    """(target frames, masked input, reconstruction) of one (1, T, S, S) clip, each (T', S, S), in the clip's
    intensity units (a model trained on per-token targets has each predicted patch de-normalised with its true
    patch's mean and SD, as MAE papers show)."""
    size = model.size
    x = clip[None]
    pred, mask = model(x, ratio, masking, torch.Generator().manual_seed(seed))
    truth = patchify(x[:, 0, target_frames(size)], size)
    pred = pred.float()
    if target == "token":
        pred = pred * (truth.var(-1, keepdim=True) + 1e-6).sqrt() + truth.mean(-1, keepdim=True)
    hidden = mask[..., None] > 0
    recon = torch.where(hidden, pred, truth)
    shown = torch.where(hidden, torch.full_like(truth, float("nan")), truth)
    return tuple(unpatchify(t, size)[0].numpy() for t in (truth, shown, recon))


def reconstruction_figure(examples: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], n_frames: int = 4):
    """Rows: one model's (target, masked, reconstruction) per example; columns: `n_frames` reconstructed frames."""
    rows = [(name, kind, arr) for name, trio in examples.items()
            for kind, arr in zip(("original", "visible", "reconstruction"), trio)]
    idx = np.linspace(0, rows[0][2].shape[0] - 1, n_frames).round().astype(int)
    fig, axes = plt.subplots(len(rows), n_frames, figsize=(1.6 * n_frames, 1.6 * len(rows)), squeeze=False,
                             constrained_layout=True)
    lo, hi = np.nanpercentile(rows[0][2], [1, 99])
    for r, (name, kind, arr) in enumerate(rows):
        for c, t in enumerate(idx):
            ax = axes[r, c]
            ax.imshow(np.ma.masked_invalid(arr[t]), cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{name}\n{kind}", fontsize=7)
            if r == 0:
                ax.set_title(f"frame {t}", fontsize=8)
    return fig


def pretraining_figure(histories: Mapping[str, pd.DataFrame]):
    """Training and validation loss per epoch of each MAE row (HeartMAE's loss is weighted, so higher)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2), constrained_layout=True)
    start = 0
    for name, h in histories.items():
        e = h["epoch"].to_numpy() + start
        line, = ax.plot(e, h["train_loss"], label=f"{name} train")
        ax.plot(e, h["valid_loss"], ls="--", color=line.get_color(), label=f"{name} valid")
        start = e.max() + 1 if name == next(iter(histories)) else start
    ax.set_xlabel("epoch (later rows continue from MAE-ViT-B)")
    ax.set_ylabel("masked-token loss")
    ax.legend(fontsize=6, ncol=2)
    return fig


def scaled_mae_figure(reg: pd.DataFrame, models: Sequence[str]):
    """Fig. S1: each regressed measure's MAE / training SD, one marker per model (lower is better)."""
    sub = reg[reg["model"].isin(models)]
    order = sub[sub["model"] == models[-1]].sort_values("scaled_MAE")["task"].tolist()
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(order)), 3.6), constrained_layout=True)
    sns.pointplot(data=sub, x="task", y="scaled_MAE", hue="model", hue_order=list(models), order=order,
                  linestyle="none", dodge=0.4, markersize=3, ax=ax)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.set_xlabel("")
    ax.set_ylabel("MAE / training SD")
    ax.legend(fontsize=7)
    return fig


def condition_figure(cls: pd.DataFrame, models: Sequence[str]):
    """Fig. 2: AP and AUROC per condition and model with 95 % bootstrap CIs."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), constrained_layout=True, sharey=False)
    tasks = list(dict.fromkeys(cls["task"]))
    width = 0.8 / len(models)
    for ax, metric, floor in zip(axes, ("AP", "AUROC"), (None, 0.5)):
        for i, m in enumerate(models):
            d = cls[cls["model"] == m].set_index("task").reindex(tasks)
            x = np.arange(len(tasks)) + (i - (len(models) - 1) / 2) * width
            err = np.vstack([d[metric] - d[f"{metric}_low"], d[f"{metric}_high"] - d[metric]])
            ax.bar(x, d[metric], width, yerr=err, capsize=1.5, label=m, error_kw=dict(lw=0.6))
        if floor:
            ax.axhline(floor, color="k", lw=0.6, ls=":")
        pos = cls.drop_duplicates("task").set_index("task")["positives"].reindex(tasks)
        ax.set_xticks(np.arange(len(tasks)), [f"{t}\n({p} pos.)" for t, p in pos.items()], fontsize=7)
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1.05)
    axes[1].legend(fontsize=6, loc="lower right")
    return fig


def attention_figure(attention: np.ndarray, names: Sequence[Sequence[str]], labels: Sequence[str]):
    """The ABMIL attention a subject gives each view (summed over crops and clips), one panel per subject."""
    fig, axes = plt.subplots(1, len(labels), figsize=(2.6 * len(labels), 2.6), constrained_layout=True,
                             squeeze=False)
    for ax, a, n, lab in zip(axes[0], attention, names, labels):
        views = pd.Series(a[:len(n)], index=[v.split("#")[0].rsplit("_", 1)[-1] for v in n]).groupby(
            level=0, sort=False).sum()
        ax.barh(views.index, views.to_numpy(), color="tab:purple")
        ax.set_xlim(0, 1)
        ax.set_xlabel("attention")
        ax.set_title(lab, fontsize=8)
        ax.tick_params(labelsize=7)
    return fig


def view_kind(name: str) -> str:
    """'ph0001_SAX:4#2' -> 'SAX', 'ph0001_4CH#0' -> '4CH': the view type of a bag entry."""
    return name.split("#")[0].rsplit("_", 1)[-1].split(":")[0]


def attention_by_view(attention: np.ndarray, names: Sequence[Sequence[str]]) -> pd.DataFrame:
    """Mean over subjects of the attention each view type receives (SAX slices together), with its SD."""
    per = pd.DataFrame([pd.Series(a[:len(n)], index=[view_kind(v) for v in n]).groupby(level=0).sum()
                        for a, n in zip(attention, names)])
    return pd.DataFrame({"view": per.columns, "attention": per.mean().to_numpy(), "sd": per.std().to_numpy()})


def real_lvef_figure(pred: pd.DataFrame, table: pd.DataFrame):
    """One panel per encoder: each real patient's out-of-fold LVEF read-out against the reference, the identity
    line, and the MAE with its CI in the title (best first)."""
    encs = table["encoder"].tolist()
    fig, axes = plt.subplots(1, len(encs), figsize=(2.9 * len(encs), 3.1), sharex=True, sharey=True, squeeze=False)
    values = pred[["predicted", "reference"]].to_numpy(float)
    lo, hi = float(np.nanmin(values)) - 3, float(np.nanmax(values)) + 3
    for ax, row in zip(axes[0], table.itertuples()):
        d = pred[pred["encoder"] == row.encoder]
        ax.scatter(d["reference"], d["predicted"], s=10, alpha=0.7)
        ax.plot([lo, hi], [lo, hi], "k:", lw=0.8)
        ax.set_title(f"{row.encoder}\nMAE {row.MAE:.1f} [{row.ci_low:.1f}, {row.ci_high:.1f}]", fontsize=8)
        ax.set_xlabel("reference LVEF (%)")
    axes[0, 0].set_ylabel("read-out LVEF (%)")
    axes[0, 0].set(xlim=(lo, hi), ylim=(lo, hi))
    fig.tight_layout()
    return fig


def readout_figure(pooled: pd.DataFrame, frames: pd.DataFrame):
    """LVEF MAE with its 95 % CI per representation: the pooled read-out and the frame-resolved one side by side,
    best frame-resolved first."""
    encs = list(dict.fromkeys([*frames["encoder"], *pooled["encoder"]]))
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(encs) + 1.2))
    for dy, (table, label, colour) in enumerate(((pooled, "pooled", "tab:grey"),
                                                  (frames, "frame-resolved", "tab:blue"))):
        t = table.set_index("encoder").reindex(encs)
        y = np.arange(len(encs)) + (dy - 0.5) * 0.3
        ax.errorbar(t["MAE"], y, xerr=[t["MAE"] - t["ci_low"], t["ci_high"] - t["MAE"]], fmt="o", color=colour,
                    label=label, capsize=2)
    ax.set_yticks(np.arange(len(encs)), encs, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("LVEF MAE, out of fold (EF points)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


# each figure's caption, beside the drawing it describes (`Study.figure` writes it with the figure)
CAPTIONS = {
    "06_flow": "a cine's frames and its optical-flow weight map W (mean Farneback magnitude, smoothed, max-scaled)",
    "06_reconstructions": "a validation clip: the frames reconstructed, the visible patches and each "
                          "model's reconstruction",
    "06_scaled_mae": "MAE / training SD of every regressed cardiac measure per model (Fig. S1)",
    "06_conditions": "average precision and AUROC per condition and model with 95 % bootstrap CIs (Fig. 2)",
    "06_attention": "ABMIL attention of HeartMAE's cardiac probe over each test subject's views",
    "06_real_patients": "LVEF of {n} real ACDC patients (reference: the full manual labels) against the "
                        "pooled read-out of each representation's frozen features, out of fold; MAE with "
                        "its 95 % bootstrap CI.",
    "06_real_frames": "LVEF MAE of {n} real ACDC patients, out of fold, by representation: one pooled "
                      "feature per patient against each slice and time step read as LV area, the curve's EF"
                      " mapped to LVEF.",
    "06_pretraining": "masked-token loss per epoch of the four MAE models (HeartMAE's is weighted)",
}
