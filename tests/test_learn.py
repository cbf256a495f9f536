"""The shared learning layer: atomic export and load, named history, pretrained encoders, the seed tree."""
from __future__ import annotations

import fastai.callback.schedule  # noqa: F401
import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.losses import MSELossFlat
from torch import nn

from cmrlib import learn as L


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
    return Learner(dls, nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1)), loss_func=MSELossFlat(),
                   metrics=[mae], path=tmp_path)


def test_history_by_name_and_export_load_roundtrip(tmp_path):
    learn = tiny_learner(tmp_path)
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-2)
    h = L.history(learn)
    assert h.columns.tolist() == ["epoch", "train_loss", "valid_loss", "mae"] and h["epoch"].tolist() == [0, 1]
    assert h["valid_loss"].iloc[-1] == pytest.approx(float(learn.recorder.values[-1][1]))
    path = L.export(learn, tmp_path / "models" / "m.pkl")
    assert path.exists() and learn.path == tmp_path and not list(path.parent.glob(".*"))
    x = torch.randn(5, 3)
    back = L.load(path)
    torch.testing.assert_close(back.model.eval()(x), learn.model.eval()(x))
    with pytest.raises(FileNotFoundError, match="run notebook 07 first"):
        L.load(tmp_path / "nope.pkl", "classifier", "notebook 07")


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


def test_bf16_callbacks_only_when_asked():
    assert L.bf16_callbacks(False) == []
    cbs = L.bf16_callbacks(True)
    assert (len(cbs) == 1 and isinstance(cbs[0], L.CPUBFloat16)) if L.device().type == "cpu" else cbs == []


def test_a_model_is_reused_only_with_the_settings_it_was_trained_with(tmp_path):
    learn = tiny_learner(tmp_path)
    path = L.export(learn, tmp_path / "m.pkl")
    settings = dict(epochs=2, widths=(8, 16), aug={"p": 0.5})
    assert not L.reusable(path, settings)  # no record of how it was trained
    L.record_settings(path, settings)
    assert L.reusable(path, dict(settings, widths=[8, 16]))  # the same settings, as JSON reads them back
    assert not L.reusable(path, dict(settings, epochs=3))
    path.unlink()
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
