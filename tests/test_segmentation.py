"""Segmentation data, model, inference geometry and metrics on small synthetic cines."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cmrlib.data import CODES, FrameGeometry, cine_frames, frame_items, seg_dls
from cmrlib.labels import BG, LV, MYO, NAMES, RV
from cmrlib.models import UNet11, WeightsUnavailable, unet11
from cmrlib.record import Cine
from cmrlib.learn import export
from cmrlib.methods.segmentation.evaluate import dice, evaluate, hd95, summarise
from cmrlib.methods.segmentation.learner import as_model, class_weights, learner, load
from cmrlib.methods.segmentation.predict import (calibrate_prior, decide, frame_probs, keep_largest, log_prior,
                                                 mean_dice, predict)
from cmrlib.methods.segmentation.predict import _calibration_frames
from cmrlib.store import CohortStore

INTENSITY = {0: 0.3, LV: 1.0, MYO: 0.1, RV: 0.7}


def toy_labels(h, w, cx, cy, r):
    """LV disc, myocardial ring and an RV blob beside it."""
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(xx - cx, yy - cy)
    lab = np.zeros((h, w), np.uint8)
    lab[np.hypot(xx - (cx - 1.9 * r), yy - cy) < 1.1 * r] = RV
    lab[d < 1.4 * r] = MYO
    lab[d < r] = LV
    return lab


def toy_cine(subject, view="SAX", t=4, z=3, h=70, w=60, spacing=1.8, seed=0):
    """A small beating synthetic cine with labels on every frame (ED = 0, ES = t // 2)."""
    g = np.random.default_rng(seed)
    cx, cy = w / 2 + g.uniform(-3, 3), h / 2 + g.uniform(-3, 3)
    radii = 8 - 3 * np.sin(np.linspace(0, np.pi, t))
    if view == "SAX":
        labels = np.stack([[toy_labels(h, w, cx, cy, r * (1 - 0.15 * k)) for k in range(z)] for r in radii])
        sp = (8.0, spacing, spacing)
    else:
        labels = np.stack([toy_labels(h, w, cx, cy, r) for r in radii])
        sp = (spacing, spacing)
    pix = np.vectorize(INTENSITY.get)(labels).astype(np.float32) * 400
    pix += g.normal(0, 20, pix.shape).astype(np.float32)
    return Cine(subject=subject, view=view, pixels=pix, spacing=sp, frame_times=np.arange(t) * 40.0,
                labels=labels, ed=0, es=t // 2, source="toy")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = CohortStore(tmp_path_factory.mktemp("toy") / "cohort")
    splits = {}
    for i in range(6):
        sub = f"toy{i:02d}"
        s.write(toy_cine(sub, "SAX", seed=i))
        s.write(toy_cine(sub, "4CH", seed=10 + i))
        splits[sub] = "train" if i < 4 else ("valid" if i == 4 else "test")
    s.write_splits(splits)
    s.manifest(refresh=True)
    return s


class Oracle(nn.Module):
    """Replays the true labels on the model grid as class scores: any error left is inference geometry."""

    def __init__(self, geometry, labels_on_grid):
        super().__init__()
        self.geometry, self.w = geometry, nn.Parameter(torch.zeros(1))
        self.queue = torch.from_numpy(labels_on_grid.reshape(-1, *labels_on_grid.shape[-2:])).long()

    def forward(self, x):
        y, self.queue = self.queue[:len(x)], self.queue[len(x):]
        return nn.functional.one_hot(y, len(NAMES)).permute(0, 3, 1, 2).float() * 10 + self.w + self.bias()

    def bias(self):
        return 0.0


class MyoGreedy(Oracle):
    """An oracle whose myocardium score beats every true class by 0.5: everything is called myocardium."""

    def bias(self):
        return 10.5 * nn.functional.one_hot(torch.tensor(MYO), len(NAMES)).float()[None, :, None, None]


def test_dice_and_hd95_on_known_shapes():
    a = np.zeros((40, 40), np.uint8)
    a[10:20, 10:20] = 1
    b = np.roll(a, 2, axis=1)
    assert dice(a, a, 1) == 1.0
    assert dice(a, b, 1) == pytest.approx(2 * 80 / 200)
    assert np.isnan(dice(a, a, 2))
    assert hd95(a, b, 1, (1.0, 1.5)) == pytest.approx(3.0)  # a 2-pixel shift at 1.5 mm per column
    assert hd95(a, a, 1, (1.0, 1.0)) == 0.0
    assert np.isnan(hd95(a, np.zeros_like(a), 1, (1.0, 1.0)))


def test_frame_items_sax_slices_become_frames(store):
    geom = FrameGeometry(size=64, spacing=2.0)
    fs = frame_items(store, ["SAX"], "train", geom, progress=False)
    assert len(fs) == 4 * 4 * 3 and fs.x.shape[1:] == (64, 64) and fs.y.dtype == np.uint8
    assert set(fs.info["view"]) == {"SAX"} and fs.info["is_ed"].sum() == 4 * 3
    few = frame_items(store, ["SAX", "4CH"], "train", geom, subjects=["toy01"], frame_step=3, progress=False)
    assert set(few.info["subject"]) == {"toy01"} and sorted(few.info["frame"].unique()) == [0, 2, 3]
    with pytest.raises(ValueError, match="no cines"):
        frame_items(store, ["2CH"], "train", geom, progress=False)


def test_frames_are_resampled_to_the_geometry(store):
    c = store.read("toy00_4CH")
    x, y, aff = cine_frames(c, FrameGeometry(size=64, spacing=0.9))
    assert x.shape == (4, 64, 64) and aff.scale == pytest.approx(2.0)
    # the LV area in mm^2 is preserved by the resampling
    assert (y[0] == LV).sum() * 0.9 ** 2 == pytest.approx((c.labels[0] == LV).sum() * 1.8 ** 2, rel=0.05)


def test_predict_maps_back_to_the_cine_grid(store):
    for cid in ("toy05_SAX", "toy05_4CH"):
        c = store.read(cid)
        geom = FrameGeometry(size=96, spacing=1.2)
        pred = predict(Oracle(geom, cine_frames(c, geom)[1]), c, bs=5)
        assert pred.shape == c.pixels.shape and pred.dtype == np.uint8
        for lab in (LV, MYO, RV):
            assert dice(pred, c.labels, lab) > 0.95


def test_encoder_features_pool_every_stage_per_frame_of_the_chosen_slices(store):
    """One vector per (frame, chosen slice) at the segmenter's geometry, every encoder stage pooled; the network's
    output unchanged by exposing its encoder."""
    from cmrlib.methods.segmentation.predict import encoder_features

    torch.manual_seed(0)
    net = unet11(width=0.125).eval()
    net.geometry = FrameGeometry(size=64, spacing=2.0)
    c = store.read("toy05_SAX")
    f = encoder_features(net, c, [0, 2])
    channels = sum(s.shape[1] for s in net.encode(torch.zeros(1, 1, 64, 64)))
    assert f.shape == (c.n_frames, 2, channels) and np.isfinite(f).all()
    assert not np.allclose(f[:, 0], f[:, 1])
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert net(x).shape == (2, net.n_classes, 64, 64)


class LeftIsLV(nn.Module):
    """Calls the left half of every frame LV and the right half RV: a model that knows no mirror symmetry."""

    def __init__(self, geometry):
        super().__init__()
        self.geometry, self.w = geometry, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        s = torch.zeros(x.shape[0], len(NAMES), *x.shape[2:]) + self.w
        half = x.shape[-1] // 2
        s[:, LV, :, :half], s[:, RV, :, half:] = 1.0, 1.0
        return s


def test_mirrored_inference_averages_the_frame_and_its_mirror_image(store):
    """With `tta` the scores are the mean of the frame's and the mirrored frame's (mirrored back): a model that
    knows only left from right then cannot choose, so every class ties where it called LV or RV alone."""
    c = store.read("toy05_4CH")
    net = LeftIsLV(FrameGeometry(size=64, spacing=None))
    (_, plain), = list(frame_probs(net, c, frames=[0]))
    net.tta = True
    (_, mirrored), = list(frame_probs(net, c, frames=[0]))
    inside = plain.sum(-1) > 0
    assert (plain[inside].max(-1) > plain[inside][:, BG] + 0.2).all()
    np.testing.assert_allclose(mirrored[..., LV][inside], mirrored[..., RV][inside], atol=0.02)


class BrightIsLV(nn.Module):
    """Calls every pixel brighter than 80 % of the frame's brightest LV: the toy's blood pool, wherever it is."""

    def __init__(self, geometry):
        super().__init__()
        self.geometry, self.w = geometry, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        s = torch.zeros(x.shape[0], len(NAMES), *x.shape[2:]) + self.w
        s[:, BG] = 1.0
        s[:, LV] = 2.0 * (x[:, 0] > 0.8 * x.amax(dim=(1, 2, 3))[:, None, None])
        return s


def test_a_heart_centred_reading_follows_a_heart_away_from_the_frame_centre(store):
    """The heart's centre is found on the cine's grid. With the field of view moved 90 mm to one side (the heart 45 mm
    off the frame's centre), a 48-px canvas round the frame's centre cuts the LV; the heart-centred reading reads
    round where the first frame shows the heart, so its LV is whole again."""
    from cmrlib.methods.segmentation.predict import heart_centre, predict_off_centre

    c = store.read("toy05_4CH")
    net = BrightIsLV(FrameGeometry(size=48, spacing=1.8))
    lv = c.labels == LV
    k = 20  # 36 mm at 1.8 mm a pixel: the heart 18 mm off the centre, inside the canvas
    moved = Cine(subject="toy", view="4CH", pixels=np.pad(c.pixels, [(0, 0), (0, 0), (k, 0)]), spacing=c.spacing,
                 frame_times=c.frame_times)
    y, x = np.argwhere(lv[0]).mean(0)
    assert heart_centre(net, moved) == pytest.approx((x + k, y), abs=1.0)
    frame_centred = predict_off_centre(net, c, 90.0, centred=False)
    heart_centred = predict_off_centre(net, c, 90.0, centred=True)
    assert heart_centred.shape == c.labels.shape
    assert dice(frame_centred, c.labels, LV) < 0.9 < 0.97 < dice(heart_centred, c.labels, LV)
    net.centred = True  # the model's own setting, as a shipped Predictor carries it
    np.testing.assert_array_equal(predict_off_centre(net, c, 90.0), heart_centred)
    blank = Cine(subject="toy", view="4CH", pixels=np.zeros_like(c.pixels), spacing=c.spacing,
                 frame_times=c.frame_times)
    assert heart_centre(net, blank) is None  # no heart found: the frame's centre stays


def test_the_sax_model_is_chosen_on_acdc_validation_among_those_that_keep_the_phantom():
    from cmrlib.methods.segmentation.evaluate import choose_sax
    rows = {("sax", "phantom validation"): 0.90, ("sax", "ACDC validation"): 0.70,
            ("acdc", "phantom validation"): 0.80, ("acdc", "ACDC validation"): 0.89,
            ("sax_real", "phantom validation"): 0.89, ("sax_real", "ACDC validation"): 0.85,
            ("acdc", "ACDC held-out"): 0.99}  # held-out rows never choose
    table = pd.DataFrame({"LV": rows}).rename_axis(["model", "data"])
    assert choose_sax(table, 0.02)[0] == "sax_real"
    assert choose_sax(table, 0.2)[0] == "acdc"


def test_decide_weights_class_scores():
    p = np.array([[0.4, 0.35, 0.25], [0.2, 0.45, 0.35]], np.float32)
    assert decide(p, np.zeros(3)).tolist() == [0, 1]
    assert decide(p, np.array([0.0, 0.0, 0.5])).tolist() == [2, 2]  # 0.25 e^0.5 = 0.41 > 0.4; 0.35 e^0.5 = 0.58 > 0.45
    assert log_prior(nn.Linear(1, 1)).tolist() == [0.0] * len(NAMES)


def test_calibrate_prior_undoes_a_greedy_structure(store):
    geom = FrameGeometry(size=96, spacing=1.2)
    ids = ["toy05_SAX", "toy05_4CH"]
    frames = [cine_frames(c, geom)[1][_calibration_frames(c, 2)] for c in map(store.read, ids)]
    greedy = MyoGreedy(geom, np.concatenate([f.reshape(-1, *f.shape[-2:]) for f in frames]))
    prior, trace = calibrate_prior(greedy, store, ids, frame_step=2, progress=False)
    assert trace["mean_dice"].iloc[0] < 0.5 and trace["mean_dice"].max() > 0.95
    assert prior[MYO] < -0.5 and prior[0] == 0  # the myocardium is held back; background is the reference
    c = store.read("toy05_4CH")
    model = MyoGreedy(geom, cine_frames(c, geom)[1])
    model.log_prior = prior
    pred = predict(model, c)
    assert all(dice(pred, c.labels, lab) > 0.95 for lab in (LV, MYO, RV))


def test_mean_dice_matches_evaluate(store):
    c = store.read("toy04_SAX")
    pred = c.labels.copy()
    pred[1][pred[1] == RV] = 0  # lose the RV at frame 1
    pred[2] = np.roll(pred[2], 2, axis=-1)
    probs = [np.eye(len(NAMES), dtype=np.float16)[f] for f in pred]  # one-hot scores of the prediction
    expected = evaluate(store, {c.cine_id: pred}).groupby("structure")["dice"].mean().mean()
    assert mean_dice(probs, list(c.labels), np.zeros(len(NAMES)), [LV, MYO, RV]) == pytest.approx(expected)


def test_evaluate_rows(store):
    preds = {cid: store.read(cid).labels for cid in ("toy04_SAX", "toy04_4CH")}
    preds["toy04_SAX"] = preds["toy04_SAX"].copy()
    preds["toy04_SAX"][1][preds["toy04_SAX"][1] == RV] = 0  # lose the RV at frame 1
    df = evaluate(store, preds)
    assert len(df) == 2 * 4 * 3 and set(df["structure"]) == {"LV", "MYO", "RV"}
    rv1 = df[(df.cine_id == "toy04_SAX") & (df.frame == 1) & (df.structure == "RV")]
    assert rv1["dice"].item() == 0 and np.isnan(rv1["hd95"].item())
    assert rv1["pred_px"].item() == 0 and rv1["truth_px"].item() == (store.read("toy04_SAX").labels[1] == RV).sum() > 0
    others = df.drop(rv1.index)
    assert (others["dice"] == 1).all() and (others["hd95"] == 0).all()
    assert df["is_ed"].sum() == 2 * 3 and (df["split"] == "valid").all()
    tab = summarise(df)
    assert tab.loc[("SAX", "RV", "all"), "n"] == 4
    dice_only = evaluate(store, preds, with_hd95=False)  # a comparison that reads only Dice skips the distances
    assert dice_only["hd95"].isna().all() and dice_only.drop(columns="hd95").equals(df.drop(columns="hd95"))


def test_unet_shapes_and_offline_weights(tmp_path, monkeypatch):
    m = unet11(n_classes=6, width=0.125)
    assert m(torch.zeros(2, 1, 64, 96)).shape == (2, 6, 64, 96)
    with pytest.raises(ValueError, match="multiples of 32"):
        m(torch.zeros(1, 1, 50, 64))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="not available offline"):
        unet11(pretrained=True)


def test_train_export_reload_predict(store, tmp_path):
    torch.set_num_threads(1)
    dls = seg_dls(store, ["SAX"], size=64, spacing=2.0, bs=8, seed=0, aug=dict(degrees=10), progress=False)
    assert dls.geometry == FrameGeometry(64, 2.0) and len(dls.valid_ds) == 12
    x, y = dls.one_batch()
    assert x.shape == (8, 1, 64, 64) and y.shape == (8, 64, 64) and list(dls.vocab) == CODES
    learn = learner(dls, width=0.125, bf16=True)
    assert [m.name for m in learn.metrics] == ["dice_LV", "dice_MYO", "dice_RV"]
    learn.fit_one_cycle(2, 3e-3)  # converge-free: the test pins the plumbing, not accuracy
    path = export(learn, tmp_path / "models" / "seg_sax.model")
    again = load(path)
    assert isinstance(again, UNet11) and again.geometry == dls.geometry
    c = store.read("toy05_SAX")
    np.testing.assert_array_equal(predict(again, c), predict(learn, c))
    as_model(learn).log_prior = np.array([0, 0.3, -0.2, 0, 0, 0], np.float32)  # a calibrated decision travels too
    as_model(learn).centred = True  # and how it reads a frame
    again = load(export(learn, path))
    np.testing.assert_array_equal(log_prior(again), log_prior(learn))
    assert again.centred is True
    # a seeded rebuild gives the same first batch (augmentation included)
    again = seg_dls(store, ["SAX"], size=64, spacing=2.0, bs=8, seed=0, aug=dict(degrees=10), progress=False)
    x2, y2 = again.one_batch()
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_poly_schedule_warms_up_then_decays_to_zero(store):
    """`fit(schedule="poly")` trains under nnU-Net's polynomial decay after a short warm-up: the recorded rates rise
    to lr, then fall monotonically towards 0; an unknown schedule is refused by name."""
    from cmrlib.methods.segmentation.learner import fit

    torch.set_num_threads(1)
    dls = seg_dls(store, ["SAX"], size=64, spacing=2.0, bs=4, seed=0, progress=False)
    learn = fit(dls, 2, 1e-3, width=0.125, schedule="poly")
    lrs = np.array(learn.recorder.lrs)
    peak = int(lrs.argmax())
    assert lrs.max() == pytest.approx(1e-3, rel=0.05) and lrs[0] < 0.1 * lrs.max()
    assert np.all(np.diff(lrs[:peak + 1]) > 0) and np.all(np.diff(lrs[peak:]) <= 0)
    assert lrs[-1] < 0.1 * lrs.max() and peak < 0.1 * len(lrs) + 1
    with pytest.raises(ValueError, match="cosine"):
        fit(dls, 1, 1e-3, width=0.125, schedule="cosine")


def test_holds_out_training_subjects_without_a_valid_split(store):
    dls = seg_dls(store, ["4CH"], size=64, spacing=2.0, bs=4, valid=None, valid_frac=0.25, progress=False)
    roles = dls.info.groupby("role")["subject"].unique()
    assert len(roles["valid"]) == 1 and not set(roles["valid"]) & set(roles["train"])
    assert NAMES[LV] in dls.vocab


def test_max_frames_caps_training_and_validation(store):
    dls = seg_dls(store, ["SAX"], size=64, spacing=2.0, bs=4, max_frames=20, progress=False)
    assert len(dls.train_ds) == 20 and len(dls.valid_ds) == 5


def test_extra_cines_join_training_at_their_share_and_never_validation(store):
    """Real frames read outside the store (a demo subject with its pseudo-labels) are cycled into the training set
    until they are `extra_share` of it; validation stays the store's."""
    real = [toy_cine("real1", "4CH", t=5, seed=99)]
    base = seg_dls(store, ["4CH"], size=64, spacing=2.0, bs=4, progress=False)
    dls = seg_dls(store, ["4CH"], size=64, spacing=2.0, bs=4, extra=real, extra_share=0.5, progress=False)
    info = dls.info.set_index("role")
    assert len(dls.train_ds) == 2 * len(base.train_ds) and len(dls.valid_ds) == len(base.valid_ds)
    assert (info.loc["train", "subject"] == "real1").sum() == len(base.train_ds)
    assert "real1" not in set(info.loc["valid", "subject"])
    assert sorted(set(info.loc["train"].query("subject == 'real1'")["frame"])) == list(range(5))
    sax = seg_dls(store, ["SAX"], size=64, spacing=2.0, bs=4, extra=[toy_cine("real2", "SAX")], extra_share=0.5,
                  progress=False)  # a real SAX stack (ACDC's manual masks): every slice of every labelled frame
    real_sax = sax.info.set_index("role").loc["train"].query("subject == 'real2'")
    assert set(zip(real_sax["frame"], real_sax["slice"])) == {(t, z) for t in range(4) for z in range(3)}
    unlabelled = toy_cine("real3", "4CH")
    unlabelled.labels = None
    with pytest.raises(ValueError, match="real3.*labelled cine"):
        seg_dls(store, ["4CH"], size=64, spacing=2.0, extra=[unlabelled], progress=False)


def test_keep_largest_drops_stray_blobs():
    lab = np.zeros((2, 30, 30), np.uint8)
    lab[0, 5:15, 5:15] = LV
    lab[1, 6:14, 6:14] = LV  # the same 3D component on the next slice
    lab[1, 25:28, 25:28] = LV  # a stray blob
    lab[0, 20:22, 2:4] = RV
    out = keep_largest(lab)
    assert (out[1, 25:28, 25:28] == 0).all() and (out[:, :15, :15] == lab[:, :15, :15]).all()
    assert (out == RV).sum() == 4


def test_the_balanced_loss_computes_on_the_device_of_its_predictions():
    """On a GPU the class weights must follow the model: fastai's `before_fit` moves the loss to the model's device
    when it is an nn.Module or a BaseLoss, and DiceCE's `to` takes its weights along (the meta device stands in for a
    GPU on this machine)."""
    from fastai.losses import BaseLoss

    from cmrlib.methods.segmentation.learner import DiceCE
    loss = DiceCE(class_weights=class_weights(np.array([9000, 900, 90, 10])))
    assert isinstance(loss, (torch.nn.Module, BaseLoss))
    loss.to(torch.device("meta"))
    pred = torch.randn(2, 4, 8, 8, device="meta")
    out = loss(pred, torch.zeros(2, 8, 8, dtype=torch.long, device="meta"))
    assert out.device.type == "meta" and loss.ce.func.weight.device.type == "meta"


def test_class_weights_favour_rare_structures():
    w = class_weights(np.array([9000, 900, 90, 0, 10, 0]), cap=50.0)
    assert w[0] < w[1] < w[2] < w[4] and w[3] == w[5] == 1.0
    assert float(w[[0, 1, 2, 4]].mean()) == pytest.approx(1.0)
    assert float(class_weights(np.array([10**6, 1, 0, 0, 0, 0]), cap=1.5).max()) == 1.5


def test_balanced_learner_weights_its_cross_entropy(store):
    dls = seg_dls(store, ["4CH"], size=64, spacing=2.0, bs=4, progress=False)
    w = learner(dls, width=0.125, balance=True).loss_func.ce.func.weight
    assert w is not None and w[RV] > w[LV] > w[0]
    assert learner(dls, width=0.125).loss_func.ce.func.weight is None
