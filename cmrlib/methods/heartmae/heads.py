"""Multiview linear probing: a gated attention-MIL layer (Ilse et al. 2018) pools a subject's view features, task
heads (one linear layer each) read the pooled vector. The encoder stays frozen; the features come from `features`.

Bags are padded to the largest and masked, so a batch of subjects gives each subject exactly what a batch of one
would (the paper's batch size 1). Regression targets are standardised on the training subjects (MSE), classes use
BCE without class weights (eq. 4, 5); a missing target contributes nothing. The epoch of best validation loss is kept.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.callback.tracker import SaveModelCallback
from fastai.learner import Learner
from torch import nn

from ...learn import callbacks, dataloaders, history
from ...utils import seeded
from ...modelfile import architecture, record


class GatedABMIL(nn.Module):
    """z = sum_i a_i h_i with a_i = softmax_i(w . (tanh(V h_i) * sigm(U h_i))) over the real views of a bag."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.v, self.u, self.w = nn.Linear(dim, hidden), nn.Linear(dim, hidden), nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, V, D) features, (B, V) real-view mask -> (B, D) pooled features, (B, V) attention."""
        score = self.w(torch.tanh(self.v(h)) * torch.sigmoid(self.u(h)))[..., 0]
        a = torch.softmax(score.masked_fill(~mask, float("-inf")), 1)
        return (a[..., None] * h).sum(1), a


@architecture
class Probe(nn.Module):
    """Standardised features -> shared gated ABMIL -> one linear output per task."""

    def __init__(self, dim: int, n_tasks: int, hidden: int = 64, dropout: float = 0.0):
        super().__init__()
        self.pool = GatedABMIL(dim, hidden)
        self.drop = nn.Dropout(dropout)
        self.heads = nn.Linear(dim, n_tasks)

    def forward(self, h, mask):
        return self.heads(self.drop(self.pool(h, mask)[0]))


def probe_loss(is_cls: torch.Tensor):
    """Mean of every present (subject, task) term: squared error for regression, BCE on logits for classes."""
    def loss(out, y):
        y, present = y[..., 0], y[..., 1] > 0
        y0 = torch.where(present, y, torch.zeros_like(y))
        terms = torch.where(is_cls.to(out.device), F.binary_cross_entropy_with_logits(out, y0, reduction="none"),
                            (out - y0) ** 2)
        return (terms * present).sum() / present.sum().clamp(min=1)
    return loss


class Bags(torch.utils.data.Dataset):
    """(features (V, D), mask (V,), targets (tasks, 2) = value and present) per subject."""

    def __init__(self, h, mask, y):
        self.h, self.mask = torch.as_tensor(h), torch.as_tensor(mask)
        present = np.isfinite(y)
        self.y = torch.as_tensor(np.stack([np.where(present, y, 0), present], -1), dtype=torch.float32)

    def __len__(self):
        return len(self.h)

    def __getitem__(self, i):
        return self.h[i], self.mask[i], self.y[i]


@dataclass(frozen=True)
class ProbeConfig:
    """Training settings of every probe (the profiles set them)."""

    hidden: int = 64
    dropout: float = 0.0
    epochs: int = 60
    bs: int = 16
    lr: float = 1e-3
    wd: float = 1e-4
    seed: int = 0


@record
@dataclass
class FittedProbe:
    """A trained probe with what turns its inputs and outputs into measures: feature and target scaling."""

    model: Probe
    tasks: list[str]
    kinds: dict[str, str]
    f_mean: np.ndarray
    f_std: np.ndarray
    y_mean: pd.Series
    y_std: pd.Series
    history: pd.DataFrame

    def scale(self, h: np.ndarray) -> torch.Tensor:
        """Features standardised as in training (the training subjects' mean and SD)."""
        return torch.as_tensor((h - self.f_mean) / self.f_std, dtype=torch.float32)

    @torch.no_grad()
    def predict(self, h: np.ndarray, mask: np.ndarray, subjects) -> pd.DataFrame:
        """Per subject and task: the measure (regression, in its unit) or the probability (classification)."""
        self.model.eval()
        out = self.model(self.scale(h), torch.as_tensor(mask)).numpy()
        df = pd.DataFrame(out, index=pd.Index(subjects, name="subject"), columns=self.tasks)
        for t in self.tasks:
            df[t] = 1 / (1 + np.exp(-df[t])) if self.kinds[t] == "cls" else df[t] * self.y_std[t] + self.y_mean[t]
        return df

    @torch.no_grad()
    def pooled(self, h: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(subject-level ABMIL features (S, D), attention over views (S, V))."""
        self.model.eval()
        z, a = self.model.pool(self.scale(h), torch.as_tensor(mask))
        return z.numpy(), a.numpy()


def fit_probe(h: np.ndarray, mask: np.ndarray, y: pd.DataFrame, kinds: dict[str, str], train: np.ndarray,
              valid: np.ndarray, cfg: ProbeConfig = ProbeConfig(), path: str | Path | None = None) -> FittedProbe:
    """Train one multitask probe on the `train` subjects (positions), keeping the best epoch on `valid`; `path`
    holds the best epoch's weights while training (None: a temporary folder)."""
    if path is None:
        with tempfile.TemporaryDirectory() as tmp:
            return fit_probe(h, mask, y, kinds, train, valid, cfg, tmp)
    tasks = list(y.columns)
    is_reg = np.array([kinds[t] == "reg" for t in tasks])
    f_mean = h[train][mask[train]].mean(0)
    f_std = h[train][mask[train]].std(0) + 1e-6
    y_mean = y.iloc[train].mean().where(is_reg, 0.0)
    y_std = y.iloc[train].std().where(is_reg, 1.0).replace(0, 1.0).fillna(1.0)
    ys = ((y - y_mean) / y_std).to_numpy(np.float32)
    hs = ((h - f_mean) / f_std).astype(np.float32)
    with seeded(cfg.seed):
        model = Probe(h.shape[-1], len(tasks), cfg.hidden, cfg.dropout)
        dls = dataloaders(Bags(hs[train], mask[train], ys[train]), Bags(hs[valid], mask[valid], ys[valid]), cfg.bs)
        learn = Learner(dls, model, loss_func=probe_loss(torch.as_tensor(~is_reg)), wd=cfg.wd, path=Path(path),
                        model_dir=".", cbs=callbacks("HeartMAE probe"))
        with learn.no_bar(), learn.no_logging(), contextlib.redirect_stdout(io.StringIO()):
            learn.fit(cfg.epochs, cfg.lr, cbs=SaveModelCallback(fname=f"probe_{cfg.seed}", with_opt=False))
    (Path(path) / f"probe_{cfg.seed}.pth").unlink(missing_ok=True)
    return FittedProbe(learn.model.eval(), tasks, dict(kinds), f_mean, f_std, y_mean, y_std, history(learn))
