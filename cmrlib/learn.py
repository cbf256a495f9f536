"""The learning layer every method shares: device choice, CPU bfloat16 training, atomic export and load, named
training history, pretrained encoders into classifiers, and reuse of a model trained with the same settings.

    learn = Learner(dls, model, loss_func=..., cbs=bf16_callbacks(bf16))
    learn.fit_one_cycle(epochs, lr)
    history(learn)                       # epoch, train_loss, valid_loss, <metric names>
    with fitting(row="A", fold=2): ...   # a non-finite loss raises NonFiniteLoss naming method, row, fold, epoch
    model, failure = attempt(dict(row="A", fold=2), fit_one_row, ...)  # the row recorded as failed, not raised
    export(learn, "runs/x/01/models/seg_sax.model")   # model.json + weights.safetensors, never a pickle
    model = load("runs/x/01/models/seg_sax.model")
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import os
import random
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback, CancelFitException, CancelValidException
from fastai.callback.schedule import SchedLin, SchedPoly, combine_scheds
from fastai.callback.tracker import TerminateOnNaNCallback, TrackerCallback
from fastai.learner import Learner
from fastai.torch_core import get_model

from . import modelfile
from .utils import atomic_write_json, cpu_bf16, to_jsonable, trains_bf16_on_cpu

__all__ = ["device", "BestWeights", "CPUBFloat16", "cpu_bf16", "bf16_callbacks", "precision", "callbacks",
           "NonFinite", "NonFiniteLoss", "FiniteLoss", "fitting", "attempt", "check_finite", "export", "load",
           "history", "load_encoder",
           "record_settings", "reusable", "dataloaders", "WeightedBCE", "pos_weight", "step_decay", "config_from"]


def device() -> torch.device:
    """The device training runs on: the GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _no_larger_than_kernel(conv: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether a convolution's input is no larger than its kernel along some axis (a 2x2x2 input to a 3x3x3 kernel,
    a 1x1 input to a strided 3x3 one): there oneDNN's CPU bfloat16 weight gradient is wrong (values near 1e37 or
    NaN, torch 2.14-2.15; `tests/test_learn.py` pins the case), while the float32 one is right."""
    k = conv.kernel_size
    return any(size <= kk for size, kk in zip(x.shape[-len(k):], k) if kk > 1)


class CPUBFloat16(Callback):
    """bfloat16 autocast of the forward pass and loss on the CPU (about 1.5-2x faster training on AVX512-BF16/AMX CPUs;
    weights and optimiser stay float32). fastai's MixedPrecision is CUDA-only. A convolution whose input is no
    larger than its kernel runs in float32 (`_no_larger_than_kernel`): a negligible share of the work."""

    order = 9

    def before_fit(self):
        convs = [m for m in self.learn.model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
        self.hooks = [h for m in convs for h in (m.register_forward_pre_hook(self._pre),
                                                 m.register_forward_hook(self._post))]
        self.fp32 = {}

    def _pre(self, conv, args):
        if not (torch.is_autocast_enabled("cpu") and _no_larger_than_kernel(conv, args[0])):
            return None
        ctx = torch.autocast("cpu", enabled=False)
        ctx.__enter__()
        self.fp32[id(conv)] = ctx
        return (args[0].float(), *args[1:])

    def _post(self, conv, args, out):
        ctx = self.fp32.pop(id(conv), None)
        if ctx is not None:
            ctx.__exit__(None, None, None)

    def after_fit(self):
        for h in getattr(self, "hooks", []):
            h.remove()
        self.hooks = []

    def before_batch(self):
        self.ctx = torch.autocast("cpu", dtype=torch.bfloat16)
        self.ctx.__enter__()

    def after_pred(self):
        pred = self.pred  # a tensor, or a tuple of them (HeartMAE's predictions, mask and clip)
        self.learn.pred = (pred.float() if isinstance(pred, torch.Tensor) else
                           type(pred)(p.float() if isinstance(p, torch.Tensor) else p for p in pred))

    def _exit(self):
        for ctx in self.fp32.values():  # a forward that raised inside a float32 convolution
            ctx.__exit__(None, None, None)
        self.fp32 = {}
        if getattr(self, "ctx", None) is not None:
            self.ctx.__exit__(None, None, None)
            self.ctx = None

    def after_loss(self):
        self._exit()

    def after_batch(self):
        self._exit()

    def after_cancel_batch(self):
        self._exit()

    def after_cancel_fit(self):
        self._exit()
        self.after_fit()


class ValidateLast(Callback):
    """Validate after the last epoch only: for fits that neither stop early nor pick an epoch, the other epochs'
    validation passes are work nothing reads (their valid_loss is left empty)."""

    def before_validate(self):
        if self.epoch < self.n_epoch - 1:
            raise CancelValidException


class BestWeights(TrackerCallback):
    """Early stopping on the validation loss with the best epoch's weights restored at the end (kept in memory: no
    file). `best_epoch` and `best` say where it was. `min_epochs`: epochs trained before one may be kept (and the
    patience starts), so that a validation loss that is lowest before the network has learned anything cannot
    keep a near-untrained network."""

    order = TrackerCallback.order + 3

    def __init__(self, patience: int = 5, monitor: str = "valid_loss", min_epochs: int = 1):
        super().__init__(monitor=monitor)
        self.patience, self.min_epochs = patience, max(1, int(min_epochs))

    def before_fit(self):
        super().before_fit()
        self.wait, self.best_epoch, self.state = 0, -1, None

    def after_epoch(self):
        if self.epoch < self.min_epochs - 1:
            return
        super().after_epoch()
        if self.new_best:
            self.wait, self.best_epoch = 0, self.epoch
            self.state = {k: v.detach().clone() for k, v in get_model(self.learn.model).state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            raise CancelFitException()

    def after_fit(self):
        super().after_fit()
        if self.state is not None:  # into the network itself, wrapped for data-parallel training or not
            get_model(self.learn.model).load_state_dict(self.state)


def bf16_callbacks(bf16: bool) -> list[Callback]:
    """The callbacks that give `bf16` training: CPU bfloat16 autocast where the CPU computes bfloat16 natively
    (elsewhere it is emulated and slower than float32), nothing on a GPU or when off."""
    return [CPUBFloat16()] if device().type == "cpu" and trains_bf16_on_cpu(bf16) else []


def precision(bf16: bool) -> str:
    """The arithmetic a fit asked for `bf16` actually trains in, for its log: 'bf16' or 'float32'."""
    return "bf16" if bf16_callbacks(bf16) else "float32"


# ---------------------------------------------------------------- non-finite numbers never pass on

_FIT_CONTEXT: contextvars.ContextVar[dict] = contextvars.ContextVar("cmrlib_fit_context", default={})


@contextlib.contextmanager
def fitting(**what):
    """Name the fit in progress (row, fold, fraction...): a non-finite loss or score inside names them."""
    token = _FIT_CONTEXT.set({**_FIT_CONTEXT.get(), **what})
    try:
        yield
    finally:
        _FIT_CONTEXT.reset(token)


def _describe(what: Mapping) -> str:
    return " ".join(f"{k} {v!r}" if isinstance(v, str) else f"{k} {v}" for k, v in what.items())


class NonFinite(FloatingPointError):
    """A number that is not finite where training or scoring needs one; `what` names the method, row, fold..."""

    def __init__(self, problem: str, what: Mapping):
        self.problem, self.what = problem, dict(what)
        super().__init__(f"{_describe(self.what)}: {problem}" if self.what else problem)


class NonFiniteLoss(NonFinite):
    """A training or validation loss that became NaN or infinite: that fit stops."""


class FiniteLoss(TerminateOnNaNCallback):
    """Stops a fit at the first non-finite training or validation loss with `NonFiniteLoss` naming the method, the
    fit's context (`fitting`), the epoch and the batch (fastai's TerminateOnNaNCallback ends the fit silently)."""

    order = -9

    def __init__(self, method: str = ""):
        self.method = method

    def after_batch(self):
        if torch.isfinite(self.loss).all():
            return
        stage = "training" if self.training else "validation"
        what = {**({"method": self.method} if self.method else {}), **_FIT_CONTEXT.get()}
        raise NonFiniteLoss(f"{stage} loss {float(self.loss.detach().float().mean())} at epoch {self.epoch}, "
                            f"batch {self.iter}", what)


def callbacks(method: str, bf16: bool = False) -> list[Callback]:
    """The callbacks every method's Learner carries: the non-finite guard and, when asked, CPU bfloat16."""
    return [FiniteLoss(method), *bf16_callbacks(bf16)]


def check_finite(values, what: str):
    """`values` (scores, predictions) when every one is finite, else `NonFinite` naming the fit in progress."""
    arr = np.asarray(values, dtype=float)
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise NonFinite(f"{bad} of {arr.size} {what} are not finite", _FIT_CONTEXT.get())
    return values


def attempt(what: Mapping, fn, *args, **kwargs):
    """`fn(*args, **kwargs)` inside `fitting(**what)`: (its result, None), or (None, a failure record naming `what`
    and the reason) when a loss or score is not finite, so a notebook reports the row and goes on with the others."""
    with fitting(**what):
        try:
            return fn(*args, **kwargs), None
        except NonFinite as e:
            return None, {**dict(what), "status": "failed", "reason": e.problem}


def dataloaders(train, valid, bs: int, order_seed: int | None = None):
    """fastai DataLoaders over two map-style datasets that draw their own augmentation from seeded generators
    (training shuffled, its last incomplete batch dropped when there is more than one batch).

    order_seed: the training batches' order from a generator of its own, for a fit that runs on a Dask worker.
    fastai otherwise seeds it from Python's global `random`, which the worker's own code may draw from while the task
    runs (`cmrlib.dask_tasks.sizes_without_global_random` keeps Dask's size estimates off it; retries and the like
    remain). None keeps fastai's draw."""
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    dls = DataLoaders(DataLoader(train, bs=bs, shuffle=True, drop_last=len(train) > bs),
                      DataLoader(valid, bs=bs * 2), device=device())
    if order_seed is not None:
        dls.train.rng = random.Random(order_seed)
    return dls


def pos_weight(y) -> float:
    """Negatives per positive of a training set: the weight that balances a binary cross-entropy."""
    y = np.asarray(y)
    return float((y == 0).sum() / max(1, (y == 1).sum()))


class WeightedBCE:
    """Binary cross-entropy on logits with the positive class weighted (for imbalanced classes)."""

    def __init__(self, pos_weight: float = 1.0):
        self.pos_weight = pos_weight

    def __call__(self, logit, y):
        return F.binary_cross_entropy_with_logits(logit, y, pos_weight=torch.tensor(self.pos_weight, device=y.device))


def step_decay(lr: float, epochs: int, every: int, factor: float = 0.5):
    """A fastai `ParamScheduler` function: `lr` multiplied by `factor` every `every` epochs (the step schedules of
    papers trained with plain Adam)."""
    return lambda pos: lr * factor ** int(pos * epochs // every)


def poly_decay(lr: float, warmup: float = 0.05, power: float = 0.9):
    """A fastai `ParamScheduler` function: a linear warm-up over the first `warmup` of training, then lr * (1 - t) **
    power to zero (nnU-Net's polynomial schedule; the warm-up keeps Adam's first steps from an inherited
    network small)."""
    warmup = min(max(warmup, 1e-3), 0.999)
    return combine_scheds([warmup, 1 - warmup], [SchedLin(lr * 1e-2, lr), SchedPoly(lr, 0.0, power)])


def export(learn: Learner | torch.nn.Module, path: str | os.PathLike, **meta) -> Path:
    """A learner's trained network (no data, no loss, no code) as a model folder at `path`, written atomically:
    readers see the old folder or the whole new one. `meta`: plain values kept beside it."""
    return modelfile.save(path, learn.model if isinstance(learn, Learner) else learn, **meta)


def load(path: str | os.PathLike, what: str = "model", made_by: str = "its notebook") -> torch.nn.Module:
    """A network `export` wrote, in eval mode on the CPU; a missing folder says which notebook makes it, a broken
    one is a `ModelFileError` naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no exported {what} (run {made_by} first)")
    model, _ = modelfile.load(path)
    if not isinstance(model, torch.nn.Module):
        raise modelfile.ModelFileError(f"{path.name}: holds a {type(model).__name__}, not a {what}")
    return model.eval()


load_model = load  # `load` under a name a parameter called `load` does not hide


def history(learn: Learner) -> pd.DataFrame:
    """The recorder's per-epoch values by name (epoch, train_loss, valid_loss, metrics...), never by position."""
    names = [n for n in learn.recorder.metric_names if n not in ("epoch", "time")]
    rows = [dict(zip(names, v)) for v in learn.recorder.values]
    return pd.DataFrame(rows, columns=names).rename_axis("epoch").reset_index()


def load_encoder(model: torch.nn.Module, state: Mapping[str, torch.Tensor] | str | os.PathLike, prefix: str = "",
                 into: str = "") -> list[str]:
    """Copy a pretrained encoder's weights (a state dict or a file) into `model`: keys under `prefix` in the state
    go to `into` in the model. Shapes must match; returns the model keys that received weights (the rest keep
    their initialisation, e.g. a classifier head)."""
    if not isinstance(state, Mapping):
        state = torch.load(state, map_location="cpu", weights_only=True)
    own = model.state_dict()
    picked = {into + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing = sorted(k for k in picked if k not in own)
    if missing:
        raise KeyError(f"load_encoder: {len(missing)} pretrained keys have no place in the model, e.g. {missing[:3]}")
    bad = [k for k, v in picked.items() if own[k].shape != v.shape]
    if bad:
        raise ValueError(f"load_encoder: shape mismatch for {bad[:3]}")
    own.update(picked)
    model.load_state_dict(own)
    return sorted(picked)


def _settings_file(model_path: str | os.PathLike) -> Path:
    return Path(model_path).with_suffix(".settings.json")


def _canonical(settings: Mapping) -> dict:
    """Settings as JSON gives them back (tuples become lists, numpy scalars plain numbers)."""
    return json.loads(json.dumps(settings, default=to_jsonable, sort_keys=True))


def record_settings(model_path: str | os.PathLike, settings: Mapping) -> Path:
    """Keep the settings a model was trained with beside it (`<model>.settings.json`), for `reusable`."""
    return atomic_write_json(_settings_file(model_path), _canonical(settings))


def reusable(model_path: str | os.PathLike, settings: Mapping) -> bool:
    """Whether an exported model can stand in for training it again: it exists and was trained with exactly these
    settings (a notebook opened on an existing run folder then shows its results without retraining)."""
    from .runfiles import RunFileError, read_json

    f = _settings_file(model_path)
    if not (Path(model_path).exists() and f.exists()):
        return False
    try:  # a regular file beside the model, never a FIFO or a link out of its folder
        return read_json(f.parent, f, kind=None) == _canonical(settings)
    except RunFileError:
        return False



@dataclasses.dataclass(frozen=True)
class Fitted:
    """What a Study's training step made: its networks by name and their training table (one row per model;
    `reused` where loaded)."""

    nets: dict
    log: Any


@dataclasses.dataclass(frozen=True)
class Made:
    """What a training step made (networks by name, or one network), its log rows and the rows that did not train."""

    nets: Any
    logs: list
    failed: list = dataclasses.field(default_factory=list)


def fit_or_reuse(path: str | os.PathLike, settings: Mapping, fit: Callable[[], Any], finish=None, *,
                 retrain: bool = False, reuse: bool = True, load: Callable[[Path], Any] | None = None,
                 save: Callable[[Any, Path], Any] | None = None) -> tuple[Any, bool, Any]:
    """The one reuse rule of every model a Study makes: the model at `path` when it was trained with exactly these
    `settings` (`reusable`) and neither `retrain`, `finish` nor `reuse=False` asks for training; else `fit()`, saved
    there (`save`, by default `export`) with its settings, or handed to `finish(model, path)` (`cmrlib fit`'s export,
    whose result is returned; its file then carries the settings too). `load` defaults to this module's `load`. (model, reused, finish's result or None)."""
    path = Path(path)
    if reuse and finish is None and not retrain and reusable(path, settings):
        return (load or load_model)(path), True, None
    model = fit()
    if finish is not None:
        done = finish(model, path)
        if path.exists():  # exported (process 0): reusable with these settings, as a Study's own export is
            record_settings(path, settings)
        return model, False, done
    (save or export)(model, path)
    record_settings(path, settings)
    return model, False, None


CASTS = {"int": int, "float": float, "bool": bool}


def config_from(cls, params: Mapping, **replace):
    """A settings dataclass from a notebook's parameters (its namespace, or what `cmrlib fit` resolved): the fields
    the parameters name, YAML lists as tuples and numbers as the field's type, so both build the same settings."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in params and f.name not in replace:
            continue
        v = replace[f.name] if f.name in replace else params[f.name]
        kind = str(f.type).removesuffix(" | None")
        if v is not None and kind.startswith("tuple"):
            v = tuple(v)
        elif v is not None and kind in CASTS:
            v = CASTS[kind](v)
        values[f.name] = v
    return cls(**values)
