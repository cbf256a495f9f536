"""The shared learning layer: atomic export and load, named history, pretrained encoders, the seed tree."""
from __future__ import annotations

import fastai.callback.schedule  # noqa: F401
import random
import shutil

import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.losses import MSELossFlat
from torch import nn

import cmrlib.utils
from cmrlib import learn as L
from cmrlib.models.cussp import mlp_head


def mae(pred, targ):
    return (pred - targ).abs().mean()


class Pairs(torch.utils.data.Dataset):
    """(x, sum of x) items; `new_empty` is what an exported Learner keeps instead of the data."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.x[i].sum(0, keepdim=True)

    def new_empty(self):
        return Pairs(self.x[:0])


def tiny_learner(tmp_path) -> Learner:
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    dls = DataLoaders(DataLoader(Pairs(x[:48]), bs=16, shuffle=True), DataLoader(Pairs(x[48:]), bs=16), device="cpu")
    return Learner(dls, mlp_head(3, 8, 1, 0.0), loss_func=MSELossFlat(), metrics=[mae], path=tmp_path)


def test_history_by_name_and_export_load_roundtrip(tmp_path):
    learn = tiny_learner(tmp_path)
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-2)
    h = L.history(learn)
    assert h.columns.tolist() == ["epoch", "train_loss", "valid_loss", "mae"] and h["epoch"].tolist() == [0, 1]
    assert h["valid_loss"].iloc[-1] == pytest.approx(float(learn.recorder.values[-1][1]))
    path = L.export(learn, tmp_path / "models" / "m.model")
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "weights.safetensors"]
    assert learn.path == tmp_path and not list(path.parent.glob(".*"))
    x = torch.randn(5, 3)
    back = L.load(path)
    torch.testing.assert_close(back(x), learn.model.eval()(x))
    with pytest.raises(FileNotFoundError, match="run notebook 07 first"):
        L.load(tmp_path / "nope.model", "classifier", "notebook 07")


class Opposite(Pairs):
    """Targets of the opposite sign: the better a network fits `Pairs`, the worse it does here."""

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x, -y


@pytest.mark.parametrize("min_epochs, best, ran", [(1, 0, 3), (4, 3, 6)])
def test_best_weights_keeps_no_epoch_before_min_epochs_and_restores_the_kept_one(tmp_path, min_epochs, best, ran):
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    dls = DataLoaders(DataLoader(Pairs(x[:48]), bs=16, shuffle=True), DataLoader(Opposite(x[48:]), bs=16),
                      device="cpu")
    learn = Learner(dls, nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1)), loss_func=MSELossFlat(),
                    path=tmp_path)
    stop = L.BestWeights(patience=2, min_epochs=min_epochs)
    with learn.no_bar(), learn.no_logging():
        learn.fit(20, 1e-2, cbs=[stop])
    h = L.history(learn)
    assert h["valid_loss"].is_monotonic_increasing  # every epoch makes the validation loss worse
    assert stop.best_epoch == best and len(h) == ran
    assert float(learn.validate()[0]) == pytest.approx(h["valid_loss"].iloc[best], rel=1e-5)


def test_load_encoder_copies_only_the_encoder(tmp_path):
    torch.manual_seed(0)
    pre = nn.Sequential(nn.Linear(3, 8), nn.Linear(8, 2))  # an "encoder" (0) and a pretext head (1)
    clf = nn.Sequential(nn.Linear(3, 8), nn.Linear(8, 5))  # the same encoder, a new head
    head_before = clf[1].weight.clone()
    torch.save(pre.state_dict(), tmp_path / "enc.pt")
    keys = L.load_encoder(clf, tmp_path / "enc.pt", prefix="0.", into="0.")
    assert keys == ["0.bias", "0.weight"]
    torch.testing.assert_close(clf[0].weight, pre[0].weight)
    torch.testing.assert_close(clf[1].weight, head_before)
    with pytest.raises(ValueError, match="shape"):
        L.load_encoder(nn.Sequential(nn.Linear(4, 8)), pre.state_dict(), prefix="0.", into="0.")
    with pytest.raises(KeyError, match="no place"):
        L.load_encoder(clf, pre.state_dict(), prefix="", into="encoder.")


def test_seed_tree_is_stable_and_separates_consumers():
    from cmrlib.utils import seed_for

    assert seed_for(0, "03", "stage", 1) == seed_for(0, "03", "stage", 1)
    seeds = {seed_for(s, *n) for s in (0, 1) for n in (("03", "stage", 1), ("03", "stage", 2), ("02",))}
    assert len(seeds) == 6 and all(0 <= s < 2**32 for s in seeds)


def test_a_seeded_block_repeats_and_hands_the_caller_back_its_random_state():
    import random
    from pathlib import Path

    import numpy as np

    from cmrlib.utils import seeded

    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    untouched = draws()
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    with seeded(7):
        first = draws()
    assert draws() == untouched  # the caller's streams go on as if the block had not run
    with seeded(7):
        assert draws() == first
    with seeded(8):
        assert draws() != first
    # one seed is set globally, by the entry points only (a notebook's setup, `cmrlib fit`): library steps scope theirs
    pkg = Path(__file__).resolve().parents[1] / "cmrlib"
    reseeding = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
                       if any(call in p.read_text() for call in ("seed_everything(", "torch.manual_seed(",
                                                                 "np.random.seed(", "random.seed(")))
    assert reseeding == ["fit.py", "results.py", "utils.py"]


def test_a_training_order_of_its_own_ignores_what_else_draws_from_the_global_random():
    """A fit on a Dask worker shares Python's global `random` with the worker's event loop, which draws from it while
    the task runs: with `order_seed` the batches' order comes from the loader's own generator."""
    data = [torch.tensor([float(i)]) for i in range(24)]

    def order(global_seed: int, order_seed: int | None) -> list[float]:
        random.seed(global_seed)  # another thread's draws leave the global state anywhere
        dls = L.dataloaders(data, data, bs=4, order_seed=order_seed)
        return [float(v) for epoch in range(2) for batch in dls.train for v in batch.flatten()]

    assert order(0, 7) == order(1, 7) and order(0, 7) != order(0, 8)
    assert sorted(order(0, 7)[:24]) == [float(i) for i in range(24)]  # every item once per epoch, shuffled
    assert order(0, None) != order(1, None)  # fastai's own draw follows the global state


def test_bf16_callbacks_only_when_asked_and_the_cpu_has_bf16(monkeypatch):
    assert L.bf16_callbacks(False) == [] and L.precision(False) == "float32"
    monkeypatch.setattr(cmrlib.utils, "cpu_bf16", lambda: True)
    cbs = L.bf16_callbacks(True)
    assert (len(cbs) == 1 and isinstance(cbs[0], L.CPUBFloat16)) if L.device().type == "cpu" else cbs == []
    monkeypatch.setattr(cmrlib.utils, "cpu_bf16", lambda: False)  # emulated bf16 is slower than float32: not used
    assert L.bf16_callbacks(True) == [] and L.precision(True) == "float32"


class Volumes(torch.utils.data.Dataset):
    """(1, 2, 2, 2) volumes with a 0/1 target: the deepest level of a 3D encoder on 32^3 patches."""

    def __init__(self, n=8, channels=16):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, channels, 2, 2, 2, generator=g), (torch.arange(n) % 2).float()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def deepest_level_grads(cbs) -> torch.Tensor:
    """The weight gradient of a 3x3x3 convolution on 2x2x2 inputs after one batch, with the given callbacks."""
    from fastai.callback.core import Callback, CancelFitException

    class Grab(Callback):
        order = 99

        def after_backward(self):
            self.learn.grad = self.learn.model[0].weight.grad.clone()
            raise CancelFitException()

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(16, 4, 3, padding=1), nn.Flatten(), nn.Linear(32, 1), nn.Flatten(0))
    dls = DataLoaders(DataLoader(Volumes(), bs=4), DataLoader(Volumes(4), bs=4), device="cpu")
    learn = Learner(dls, net, loss_func=nn.BCEWithLogitsLoss(), cbs=cbs)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3, cbs=[Grab()])
    return learn.grad


def test_cpu_bf16_trains_convolutions_no_larger_than_their_kernel_in_float32():
    """oneDNN's CPU bfloat16 weight gradient of a 3x3x3 convolution on a 2x2x2 input is wrong (values near 1e37):
    SSLHF's deepest level and the MONAI baselines trained into NaN. CPUBFloat16 runs such convolutions in float32."""
    conv = nn.Conv3d(16, 4, 3, padding=1)
    assert L._no_larger_than_kernel(conv, torch.zeros(1, 16, 2, 2, 2))
    assert not L._no_larger_than_kernel(conv, torch.zeros(1, 16, 4, 4, 4))
    assert L._no_larger_than_kernel(nn.Conv2d(4, 4, 3, stride=2), torch.zeros(1, 4, 1, 1))
    assert not L._no_larger_than_kernel(nn.Conv2d(4, 4, 1), torch.zeros(1, 4, 1, 1))
    reference = deepest_level_grads([])
    bf16 = deepest_level_grads([L.CPUBFloat16()])
    assert torch.isfinite(bf16).all()
    torch.testing.assert_close(bf16, reference, rtol=0.05, atol=1e-3)


class NaNAfter(nn.Module):
    """A linear model whose output turns NaN from epoch `epoch` on (a fit that diverges, on purpose)."""

    def __init__(self):
        super().__init__()
        self.lin, self.calls = nn.Linear(3, 1), 0

    def forward(self, x):
        self.calls += 1
        out = self.lin(x)
        return out * float("nan") if self.calls > 4 else out


def test_a_non_finite_loss_stops_the_fit_with_a_typed_error_naming_method_row_fold_and_epoch(tmp_path):
    learn = tiny_learner(tmp_path)
    learn.model = NaNAfter()
    learn.add_cb(L.FiniteLoss("SSLHF"))
    with L.fitting(row="A: no proxy", fold=2), pytest.raises(L.NonFiniteLoss) as err:
        with learn.no_bar(), learn.no_logging():
            learn.fit(3, 1e-3)
    e = err.value
    assert e.what == {"method": "SSLHF", "row": "A: no proxy", "fold": 2}
    assert "epoch 1" in e.problem and "training loss nan" in e.problem
    assert "SSLHF" in str(e) and "'A: no proxy'" in str(e) and "fold 2" in str(e)


def test_attempt_records_a_failed_row_and_check_finite_names_it(tmp_path):
    def diverging():
        learn = tiny_learner(tmp_path)
        learn.model = NaNAfter()
        learn.add_cbs(L.callbacks("CUSSP"))
        with learn.no_bar(), learn.no_logging():
            learn.fit(3, 1e-3)
        return learn

    done, failure = L.attempt(dict(row="CUSSP-1"), diverging)
    assert done is None and failure["row"] == "CUSSP-1" and failure["status"] == "failed"
    assert "loss nan at epoch 1" in failure["reason"]
    done, failure = L.attempt(dict(row="RF"), lambda: L.check_finite([0.2, float("inf"), 0.1], "MR probabilities"))
    assert done is None and failure["reason"] == "1 of 3 MR probabilities are not finite"
    assert L.attempt(dict(row="RF"), lambda: L.check_finite([0.2, 0.1], "scores")) == ([0.2, 0.1], None)


def test_a_model_is_reused_only_with_the_settings_it_was_trained_with(tmp_path):
    learn = tiny_learner(tmp_path)
    path = L.export(learn, tmp_path / "m.model")
    settings = dict(epochs=2, widths=(8, 16), aug={"p": 0.5})
    assert not L.reusable(path, settings)  # no record of how it was trained
    L.record_settings(path, settings)
    assert L.reusable(path, dict(settings, widths=[8, 16]))  # the same settings, as JSON reads them back
    assert not L.reusable(path, dict(settings, epochs=3))
    shutil.rmtree(path)
    assert not L.reusable(path, settings)


def test_config_from_reads_the_fields_a_namespace_names_with_their_types():
    from dataclasses import dataclass

    from cmrlib.learn import config_from

    @dataclass
    class Settings:
        widths: tuple[int, ...] = (1,)
        epochs: int = 1
        lr: float = 0.1
        bf16: bool = False
        smooth: int | None = None
        kept: str = "default"

    namespace = dict(widths=[8, 16], epochs=3.0, lr=1, bf16=1, smooth="valid", other=5)
    got = config_from(Settings, namespace, smooth=None)
    assert got == Settings(widths=(8, 16), epochs=3, lr=1.0, bf16=True, smooth=None, kept="default")
    assert type(got.epochs) is int and type(got.lr) is float
