"""The temporal structured loss (eq. 2), the aFD metrics and learners for TempReg-Net and its baselines."""
from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.optimizer import Adam

from ...learn import Fitted, callbacks, fit_or_reuse, history
from ...learn import load as load_exported
from ...models.tempreg import tempreg_net
from ...utils import seeded
from .curves import decode, frame_diff


def _cyclic_pairs(mask: torch.Tensor, cyclic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of each frame's successor (the last real frame's is frame 0 when cyclic) and which pairs count."""
    b, t = mask.shape
    lengths = mask.sum(1, keepdim=True)
    idx = torch.arange(t, device=mask.device).expand(b, t)
    last = idx + 1 >= lengths
    nxt = torch.where(last, torch.zeros_like(idx), idx + 1)
    return nxt, mask & (~last | cyclic) & (lengths > 1)


def tsc_loss(pred: torch.Tensor, targ: torch.Tensor, mask: torch.Tensor | None = None,
             cyclic: bool = True) -> torch.Tensor:
    """Temporal structured loss (eq. 2): the mean hinge on consecutive predicted differences whose sign disagrees
    with the label curve's (the prediction falls where the label rises, or rises where it falls)."""
    if mask is None:
        mask = ~torch.isnan(targ)
    y = torch.nan_to_num(targ)
    nxt, ok = _cyclic_pairs(mask, cyclic)
    dp = pred.gather(1, nxt) - pred
    dy = y.gather(1, nxt) - y
    pen = F.relu(-torch.sign(dy) * dp)
    return (pen * ok).sum() / ok.sum().clamp(min=1)


class TempRegLoss:
    """MSE on the real frames + beta * temporal structured loss (alpha * L2 is the optimiser's weight decay)."""

    def __init__(self, beta: float = 1.0, cyclic: bool = True):
        self.beta, self.cyclic = float(beta), cyclic

    def __call__(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        mask = ~torch.isnan(targ)
        mse = ((pred - torch.nan_to_num(targ)) ** 2 * mask).sum() / mask.sum().clamp(min=1)
        if self.beta == 0:
            return mse
        return mse + self.beta * tsc_loss(pred, targ, mask, self.cyclic)

    def __repr__(self):
        return f"TempRegLoss(beta={self.beta}, cyclic={self.cyclic})"


def _batch_fd(pred: torch.Tensor, targ: torch.Tensor, which: int) -> torch.Tensor:
    """Mean cyclic frame difference of ED (which=0) or ES (which=1) over the sequences of a padded batch."""
    out = []
    for p, y in zip(pred.detach().cpu().numpy(), targ.detach().cpu().numpy()):
        n = int((~np.isnan(y)).sum())
        out.append(frame_diff(decode(p[:n])[which], decode(y[:n])[which], n))
    return torch.tensor(float(np.mean(out)))


def afd_ed(pred, targ):
    """Validation metric: mean absolute (cyclic) ED frame difference."""
    return _batch_fd(pred, targ, 0)


def afd_es(pred, targ):
    """Validation metric: mean absolute (cyclic) ES frame difference."""
    return _batch_fd(pred, targ, 1)


DETECTORS = {  # Table 1 row -> (model kind, use the temporal structured loss)
    "CNN+Reg": ("cnnreg", False),
    "TempReg-Net w/o TSC": ("tempreg", False),
    "TempReg-Net": ("tempreg", True),
}


def learner(dls: DataLoaders, method: str = "TempReg-Net", beta: float = 1.0, alpha: float = 1e-4,
                 path: str | Path = ".", **model_kw) -> Learner:
    """A fastai Learner for one row of `DETECTORS`: MSE (+ beta * TSC) with alpha as a true L2 penalty.

    `Adam(decouple_wd=False)` adds alpha * w to every gradient, i.e. the gradient of the paper's
    (alpha / 2) * ||w||^2 loss term, rather than AdamW's decoupled decay; BatchNorm and bias are not decayed."""
    if method not in DETECTORS:
        raise ValueError(f"unknown ED/ES method {method!r}; expected one of {list(DETECTORS)}")
    kind, tsc = DETECTORS[method]
    return Learner(dls, tempreg_net(kind, **model_kw), loss_func=TempRegLoss(beta if tsc else 0.0),
                   opt_func=partial(Adam, decouple_wd=False), wd=alpha, metrics=[afd_ed, afd_es], path=path,
                   cbs=callbacks("ED/ES"))


def fit(dls: DataLoaders, method: str, epochs: int, lr: float, seed: int = 0, **kw) -> tuple[Learner, dict]:
    """Train one method from `seed` (every method starts from the same random state, so only the model and loss
    differ) with a one-cycle schedule; the learner and a summary row (seconds, last validation loss and aFD)."""
    with seeded(seed):
        learn = learner(dls, method, **kw)
        t0 = time.perf_counter()
        learn.fit_one_cycle(epochs, lr)
    v = history(learn).iloc[-1]
    return learn, dict(method=method, train_s=time.perf_counter() - t0, valid_loss=v["valid_loss"],
                       valid_aFD_ED=v["afd_ed"], valid_aFD_ES=v["afd_es"])


def model_file(method: str) -> str:
    """The file a trained method is exported to in a models folder ('CNN+Reg' -> cnn_reg.model)."""
    return f"{method.lower().replace(' ', '_').replace('/', '').replace('+', '_')}.model"


def load(path: str | Path) -> torch.nn.Module:
    """A trained ED/ES network exported with `cmrlib.learn.export`, ready for `predict`."""
    return load_exported(path, "ED/ES model", "notebook 02")


# the profile's settings a network's file is reused by (with its method, cohort and model arguments)
SETTINGS = ("views", "size", "zoom", "epochs", "lr", "bs", "alpha", "beta", "delta", "upsilon", "max_cines", "seed")


def make_models(methods: list[str], settings: Callable[[str], dict], train: Callable[[str], tuple], out: Path,
                finish=None, retrain: bool = False) -> Fitted:
    """Every method (`train(m)`: its Learner and training row), each reused when `out` holds it with exactly
    `settings(m)` and a row in `training.csv` (`fit_or_reuse`; `finish`: `cmrlib fit`'s export, which gives the
    validation loss); the networks and the training table."""
    trained = pd.read_csv(out / "training.csv").set_index("method") if (out / "training.csv").exists() else None
    nets, rows = {}, []
    for m in methods:
        fname, row = f"models/{model_file(m)}", {}

        def train_one(m=m, row=row):
            learn, fitted = train(m)
            row.update(fitted)
            return learn

        # a model whose training row is gone is trained again: the table keeps every row's numbers
        net, reused, finished = fit_or_reuse(out / fname, settings(m), train_one, finish, load=load, retrain=retrain,
                                             reuse=trained is not None and m in trained.index)
        if reused:
            nets[m] = net
            rows.append(dict(method=m, **trained.loc[m].drop("reused").to_dict(), reused=True))
            continue
        if finished is not None:
            row["valid_loss"] = finished[0]
        nets[m] = net.model.eval()
        rows.append(dict(row, model=fname, reused=False))
    return Fitted(nets, pd.DataFrame(rows))
