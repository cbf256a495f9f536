"""The two checks HeartMAE must pass on validation views before its tables mean anything.

Pretext gate: on the validation clips, with the same seeded masks for everyone, the trained MAE's masked-token loss
beside what needs no learning: a copy rule (each masked token copied from the visible token at the same place in
the nearest frame, else the mean of the visible tokens), the mean rule (every masked token the mean of the visible
ones) and a random network of the same shape. An MAE that does not beat the copy rule has not learned its task.

Features gate: a ridge regression of each target on each encoder's frozen subject features (the mean over the
subject's views), fitted on the training subjects and scored on the validation subjects, beside the same for a
random encoder: what pretraining taught the encoder that a random projection does not carry.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ...models.mae_st import VideoMAE, targets
from .data import Clips

COPY, MEAN = "copy rule", "mean rule"


def copy_rule(tgt: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Predictions (B, N, D) for target tokens `tgt` (B, N, D) whose `mask` (B, N) is 1 where hidden: each hidden
    token copied from the visible token at the same (row, column) in the nearest time step, else the mean of the
    clip's visible tokens."""
    b, n, d = tgt.shape
    gt, gs = grid[0], grid[1] * grid[2]
    t, hidden = tgt.view(b, gt, gs, d), mask.view(b, gt, gs).bool()
    steps = torch.arange(gt, dtype=torch.float32)
    dist = (steps[:, None] - steps[None, :]).abs()[None, :, :, None].expand(b, gt, gt, gs).clone()  # (b, tau, tau', s)
    dist[hidden[:, None, :, :].expand(b, gt, gt, gs)] = float("inf")
    nearest = dist.argmin(2)  # (b, tau, s): the nearest visible time at each place
    some = torch.isfinite(dist.min(2).values)
    copied = torch.gather(t, 1, nearest[..., None].expand(b, gt, gs, d))
    return torch.where(some[..., None], copied, mean_rule(tgt, mask).view(b, gt, gs, d)).view(b, n, d)


def mean_rule(tgt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Every token predicted as the mean of the clip's visible tokens."""
    vis = (1 - mask)[..., None]
    mean = (tgt * vis).sum(1, keepdim=True) / vis.sum(1, keepdim=True).clamp(min=1)
    return mean.expand_as(tgt)


def _masked_mse(pred: torch.Tensor, tgt: torch.Tensor, mask: torch.Tensor) -> float:
    return float((((pred - tgt) ** 2).mean(-1) * mask).sum() / mask.sum())


@torch.inference_mode()
def pretext(models: Mapping[str, VideoMAE], random: VideoMAE, clips: Clips, ratio: float, masking: str,
            seed: int, draws: int = 3, bs: int = 16, target: str = "dataset") -> pd.DataFrame:
    """Masked-token loss (eq. 1 on the pixels as `target` normalises them) on validation clips of every model beside
    the copy rule, the mean rule and a random network, each scored on the same `draws` seeded masks per clip."""
    x = torch.stack([clips[i][0] for i in range(len(clips))])
    size = random.size
    rows: dict[str, list[float]] = {}
    for k in range(draws):
        for i in range(0, len(x), bs):
            xb = x[i:i + bs]
            tgt = targets(xb, size, target)
            for name, net in {**models, "random network": random}.items():
                g = torch.Generator().manual_seed(seed + 1000 * k + i)
                pred, mask = net.eval()(xb, ratio, masking, g)
                rows.setdefault(name, []).append(_masked_mse(pred.float(), tgt, mask))
            rows.setdefault(COPY, []).append(_masked_mse(copy_rule(tgt, mask, size.grid), tgt, mask))
            rows.setdefault(MEAN, []).append(_masked_mse(mean_rule(tgt, mask), tgt, mask))
    return pd.DataFrame([dict(model=name, masked_loss=float(np.mean(v)), clips=len(x), draws=draws, ratio=ratio,
                              masking=masking) for name, v in rows.items()])


def family_pretext(models: Mapping[str, VideoMAE], specs: Mapping[str, dict], random: VideoMAE, clips: Clips,
                   seed: int, target: str) -> pd.DataFrame:
    """`pretext` of each model (by row of `specs`, the family's masking ratio and scheme) beside the same random
    network and the copy and mean rules, a row per (family row, model)."""
    return pd.concat([pretext({row: models[row]}, random, clips, spec["ratio"], spec["masking"], seed, target=target)
                      .assign(row=row) for row, spec in specs.items() if row in models], ignore_index=True)


def subject_means(features: np.ndarray, table: pd.DataFrame, subjects: Sequence[str]) -> np.ndarray:
    """(subjects, dim) mean of each subject's view features (`features` (views, ...) in `table`'s order)."""
    f = np.asarray(features, np.float64)
    f = f.mean(1) if f.ndim == 3 else f.reshape(len(f), -1)  # (views, crops x clips, dim): the views' mean feature
    by = pd.DataFrame(f).groupby(table["subject"].to_numpy()).mean()
    return by.reindex(list(subjects)).to_numpy()


def ridge(features: Mapping[str, np.ndarray], table: pd.DataFrame, y: pd.DataFrame, kinds: Mapping[str, str],
          train: Sequence[str], valid: Sequence[str]) -> pd.DataFrame:
    """Validation MAE (regression targets, in their units) of a ridge regression (alpha chosen by leave-one-out on
    the training subjects) on each encoder's frozen subject features; the gate compares the rows."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = []
    for name, f in features.items():
        xt, xv = subject_means(f, table, train), subject_means(f, table, valid)
        for task in [t for t in y.columns if kinds.get(t) == "reg"]:
            yt, yv = y.loc[list(train), task].to_numpy(float), y.loc[list(valid), task].to_numpy(float)
            ok_t, ok_v = np.isfinite(yt) & np.isfinite(xt).all(1), np.isfinite(yv) & np.isfinite(xv).all(1)
            if ok_t.sum() < 3 or ok_v.sum() < 1:
                continue
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13))).fit(xt[ok_t], yt[ok_t])
            mae = float(np.abs(model.predict(xv[ok_v]) - yv[ok_v]).mean())
            rows.append(dict(encoder=name, task=task, valid_MAE=mae,
                             mean_rule_MAE=float(np.abs(yt[ok_t].mean() - yv[ok_v]).mean()), n_valid=int(ok_v.sum())))
    return pd.DataFrame(rows, columns=["encoder", "task", "valid_MAE", "mean_rule_MAE", "n_valid"])
