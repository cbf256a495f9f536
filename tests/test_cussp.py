"""CUSSP (notebook 04): valve localisation, patch and equalisation on toy masks, inputs, losses, labels, Table 2."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cmrlib.labels import LA, LV
from cmrlib.measure import resample_cycle
from cmrlib.methods import cussp
from cmrlib.tables import TableError
from cmrlib.phantom import make_cohort
from cmrlib.models.cussp import CUSSPNet, barlow_twins_loss, contrastive_loss
from cmrlib.record import Cine
from cmrlib.stats import f1_threshold


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """Four 4CH-only phantom subjects continuing a cohort of 10 (subjects ph0011-ph0014)."""
    return make_cohort(tmp_path_factory.mktemp("cussp") / "pool", n=4, seed=3, views=("4CH",), start=10,
                       workers=1, progress=False, n_frames=8, matrix=64, pixel_mm=3.0)


def test_a_pool_continues_the_cohort_with_new_subjects(tiny_store):
    assert sorted(tiny_store.manifest().subject.unique()) == ["ph0011", "ph0012", "ph0013", "ph0014"]
    assert set(tiny_store.manifest().view) == {"4CH"}


def two_ellipses(angle_deg: float, center=(60.0, 70.0), shape=(128, 128)) -> tuple[np.ndarray, np.ndarray]:
    """An LA half-ellipse on top of an LV half-ellipse meeting along a valve segment (40 px long) through `center`,
    the LV->LA direction turned `angle_deg` from straight up; returns labels and that unit normal (x, y)."""
    t = np.radians(angle_deg)
    n = np.array([np.sin(t), -np.cos(t)])  # straight up is (0, -1) in (x, y), rows pointing down
    along = np.array([-n[1], n[0]])
    ys, xs = np.indices(shape)
    d = np.stack([xs - center[0], ys - center[1]], -1)
    u, v = d @ along, d @ n
    lab = np.zeros(shape, np.uint8)
    lab[(v >= 0) & ((u / 20) ** 2 + (v / 25) ** 2 <= 1)] = LA
    lab[(v < 0) & ((u / 20) ** 2 + (v / 40) ** 2 <= 1)] = LV
    return lab, n


@pytest.mark.parametrize("angle", [0.0, 35.0, -60.0, 150.0])
def test_valve_line_finds_the_known_centre_and_angle(angle):
    lab, n = two_ellipses(angle)
    valve = cussp.valve.valve_line(lab)
    assert np.allclose(valve.center, (60.0, 70.0), atol=1.5)
    assert np.dot(valve.normal, n) > np.cos(np.radians(4))
    assert np.linalg.norm(valve.ends[1] - valve.ends[0]) == pytest.approx(40, abs=3)


@pytest.mark.parametrize("angle", [0.0, 35.0, -60.0, 150.0])
def test_patch_puts_the_valve_horizontal_at_the_centre_with_the_atrium_on_top(angle):
    lab, n = two_ellipses(angle)
    valve = cussp.valve.valve_line(lab)
    aff = cussp.valve.patch_map(valve, spacing_mm=1.8, size=64, patch_mm=1.8)
    c = aff.points(np.array(valve.center))
    assert np.allclose(c, (31.5, 31.5), atol=1e-6)
    ends = aff.points(valve.ends)
    assert abs(ends[0, 1] - ends[1, 1]) < 1.5  # horizontal
    up = aff.points(np.array(valve.center) + 10 * np.array(valve.normal))
    assert up[1] < 31.5 - 9 and abs(up[0] - 31.5) < 1.5  # the LA above the valve
    patch = aff.mask(lab)
    assert (patch[:28] == LA).sum() > 5 * (patch[:28] == LV).sum()
    assert (patch[36:] == LV).sum() > 5 * (patch[36:] == LA).sum()
    back = aff.inverse_points(aff.points(valve.ends))  # a patch maps back onto the frame exactly
    assert np.allclose(back, valve.ends, atol=1e-6)


def test_patch_is_resampled_at_a_fixed_mm_per_pixel():
    lab, _ = two_ellipses(0.0)
    valve = cussp.valve.valve_line(lab)
    ends = cussp.valve.patch_map(valve, spacing_mm=1.2, size=64, patch_mm=2.4).points(valve.ends)
    assert np.linalg.norm(ends[1] - ends[0]) == pytest.approx(np.linalg.norm(valve.ends[1] - valve.ends[0]) / 2)


def test_no_valve_and_border_valves_raise_a_typed_error():
    lab, _ = two_ellipses(0.0)
    with pytest.raises(cussp.valve.ValveError, match="no LA"):
        cussp.valve.valve_line(np.where(lab == LA, 0, lab))
    apart = lab.copy()
    apart[np.roll(lab == LA, -12, axis=0)] = LA  # move the atrium away from the ventricle
    apart[(lab == LA) & ~np.roll(lab == LA, -12, axis=0)] = 0
    with pytest.raises(cussp.valve.ValveError, match="do not meet"):
        cussp.valve.valve_line(apart)
    edge, _ = two_ellipses(0.0, center=(60.0, 8.0))
    cine = Cine(pixels=np.random.default_rng(0).random((4, 128, 128), dtype=np.float32),
                spacing=(1.8, 1.8), frame_times=np.arange(4) * 40.0, labels=np.stack([edge] * 4), ed=0, es=2, view="4CH",
                subject="x")
    with pytest.raises(cussp.valve.ValveError, match="border"):
        cussp.valve.valve_patch(cine, cine.labels)


def test_equalisation_spreads_the_atrium_over_zero_to_one():
    g = np.random.default_rng(1)
    pixels = g.random((5, 32, 32)).astype(np.float32)
    la = np.zeros_like(pixels, bool)
    la[:, 8:20, 8:20] = True
    pixels[la] = 0.4 + 0.1 * pixels[la]  # the atrium occupies a narrow band of intensities
    eq = cussp.valve.equalise_la(pixels, la)
    assert eq.min() >= 0 and eq.max() <= 1
    assert eq[la].mean() == pytest.approx(0.5, abs=0.02) and eq[la].max() == 1.0
    order = np.argsort(pixels.ravel())
    assert np.all(np.diff(eq.ravel()[order]) >= 0)  # monotone
    with pytest.raises(cussp.valve.ValveError, match="too few"):
        cussp.valve.equalise_la(pixels, np.zeros_like(la))


def test_time_axis_helpers():
    x = np.arange(6, dtype=np.float32)[:, None]
    assert np.allclose(resample_cycle(x, 6), x)
    assert np.allclose(resample_cycle(x, 12)[1::2, 0], [0.5, 1.5, 2.5, 3.5, 4.5, 2.5])  # wraps 5 -> 0
    assert cussp.data.systolic_window(x, es=2, n=4)[:, 0].tolist() == [5, 0, 1, 2]  # ends at ES, cyclic
    with pytest.raises(cussp.valve.ValveError, match="fewer than"):
        cussp.data.systolic_window(x, es=2, n=8)


def test_augmentation_is_seeded_and_keeps_the_range():
    x = np.random.default_rng(0).random((6, 32, 32)).astype(np.float32)
    aug = cussp.data.PatchAug()
    a = aug(x, np.random.default_rng(5))
    assert np.array_equal(a, aug(x, np.random.default_rng(5)))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1 and not np.allclose(a, x)
    assert np.allclose(cussp.data.jitter(x, 1.0, 1.0, 0.0), x)  # the identity parameters change nothing


def test_barlow_and_contrastive_losses():
    torch.manual_seed(0)
    z = torch.randn(256, 16)
    assert barlow_twins_loss(z, z, lambd=0.0) < 1e-3  # identical views: diagonal at 1
    assert barlow_twins_loss(z, torch.randn(256, 16), lambd=0.0) > 10
    e = torch.randn(8, 4)
    assert contrastive_loss(e, e, torch.zeros(8)) < 1e-6  # like pairs, equal: nothing to pull
    assert contrastive_loss(e, e, torch.ones(8), margin=1.0) == pytest.approx(1.0)  # unlike, equal: margin^2


def test_siamese_freeze_keeps_only_the_last_block_training():
    net = CUSSPNet(frames=6, width=8, proj_dims=(16, 16), hidden=8).freeze_all_but_last_block()
    trainable = {n.split(".")[1] for n, p in net.named_parameters() if p.requires_grad and n.startswith("encoder.")}
    assert trainable == {"layer4"}
    net.train()
    assert not net.encoder.bn1.training and net.encoder.layer4[0].bn1.training
    out = net(torch.rand(4, 2, 6, 32, 32))
    assert [tuple(t.shape) for t in out] == [(4, 16), (4, 16), (4,), (4,)]


def test_labels_table_checks_and_records(tmp_path, tiny_store):
    store = tiny_store
    subs = sorted(store.manifest().subject.unique())
    f = tmp_path / "labels.csv"
    pd.DataFrame(dict(subject=[subs[0], "nobody"], mr=[1, 0])).to_csv(f, index=False)
    lab = cussp.data.mr_labels(store, f)
    assert lab.subject.tolist() == [subs[0]] and lab.attrs["unknown"] == ["nobody"]
    assert set(lab.attrs["unlabelled"]) == set(subs[1:])
    pd.DataFrame(dict(subject=[subs[0]], mr=[2])).to_csv(f, index=False)
    with pytest.raises(TableError, match="labels.csv: line 2, column mr: not 0 or 1"):
        cussp.data.mr_labels(store, f)
    pd.DataFrame(dict(subject=[subs[0]])).to_csv(f, index=False)
    with pytest.raises(TableError, match="lacks the column"):
        cussp.data.mr_labels(store, f)
    phantom = cussp.data.mr_labels(store)
    grades = store.manifest().drop_duplicates("subject").set_index("subject").mr_grade
    assert (phantom.mr == (grades.reindex(phantom.subject).to_numpy() >= 1)).all()


def test_preprocess_store_records_failures_and_round_trips(tmp_path, tiny_store):
    store = tiny_store
    ids = store.select(view="4CH")
    broken = ids[0]

    def segment(cine):  # the true masks, but no atrium in one cine
        return np.where(cine.labels == LA, 0, cine.labels) if cine.cine_id == broken else cine.labels

    ps = cussp.data.preprocess_store(store, segment, ids, size=32, patch_mm=3.6, frames=8, window=6, crop_size=32,
                                crop_mm=5.0, progress=False)
    assert broken not in ps.cine_ids and len(ps) == len(ids) - 1
    assert ps.failures.set_index("cine_id").reason[broken].startswith("no LA")
    assert ps.cycle.shape[1:] == (8, 32, 32) and ps.window.shape[1:] == (6, 32, 32) and ps.has_window.all()
    settings = dict(size=32, ids=ids)
    ps.save(tmp_path / "p.npz", settings)
    back = cussp.data.PatchSet.load(tmp_path / "p.npz", settings)
    assert back.cine_ids == ps.cine_ids and np.array_equal(back.cycle, ps.cycle)
    assert back.failures.cine_id.tolist() == [broken]
    assert cussp.data.PatchSet.load(tmp_path / "p.npz", dict(settings, size=64)) is None


def test_table2_thresholds_from_validation_and_metrics_with_cis():
    g = np.random.default_rng(0)
    y = np.r_[np.zeros(40), np.ones(10)].astype(int)
    good, bad = y + g.normal(0, 0.4, 50), g.random(50)
    thr = cussp.evaluate.thresholds({"CUSSP-SIAM-25": (y, good), "RF": (y, bad)})
    assert thr["CUSSP-SIAM-25"] == f1_threshold(y, good)
    long = cussp.evaluate.evaluate({"RF": (y, bad), "CUSSP-SIAM-25": (y, good)}, thr, n_boot=200)
    v = long.set_index(["row", "metric"])
    assert v.value[("CUSSP-SIAM-25", "roc_auc")] > v.value[("RF", "roc_auc")]
    assert (v.ci_low <= v.value + 1e-12).all() and (v.value <= v.ci_high + 1e-12).all()
    assert v.paper[("CUSSP-SIAM-25", "f1")] == 0.69
    tab = cussp.evaluate.table2(long)
    assert list(tab.index) == ["RF", "CUSSP-SIAM-25"] and tab.loc["RF", "paper AUC"] == 0.58
    by = cussp.evaluate.recall_by_grade(np.r_[np.zeros(40), [1] * 4, [2] * 3, [3] * 3], {"x": good}, {"x": thr["CUSSP-SIAM-25"]})
    assert by.n.tolist() == [4, 3, 3] and by.found.le(by.n).all()


def test_a_split_with_one_class_gives_rows_that_are_not_testable():
    y, s = np.zeros(6, int), np.linspace(0.1, 0.9, 6)
    long = cussp.evaluate.evaluate({"RF": (y, s), "CUSSP-1": (np.r_[y, 1], np.r_[s, 0.5])}, {"RF": 0.5, "CUSSP-1": 0.5},
                          n_boot=50)
    rf = long[long.row == "RF"]
    assert rf.value.isna().all() and rf.note.eq("not testable: 0 positive and 6 negative cases; metrics and a "
                                                 "stratified bootstrap need both classes").all()
    assert (long[long.row == "CUSSP-1"].note == "").all()
    tab = cussp.evaluate.table2(long)
    assert (tab.loc["RF", ["F1", "AUC"]] == "not testable").all() and tab.loc["CUSSP-1", "F1"] != "not testable"


def test_f1_threshold_picks_the_best_cut_between_scores():
    assert f1_threshold([0, 0, 1, 1, 0, 1], [0.1, 0.2, 0.7, 0.8, 0.75, 0.3]) == pytest.approx(0.25)


def test_siamese_training_moves_only_the_last_block_and_exports(tmp_path):
    g = np.random.default_rng(0)
    x = g.random((12, 6, 24, 24)).astype(np.float32)
    y = np.array([0, 1] * 6)
    x[y == 1, :, 8:16, 8:16] *= 0.2  # a dark "jet" in the MR cines
    cfg = cussp.learner.CUSSPConfig(width=8, proj_dims=(16, 16), hidden=8, input_px=16, pretrain_steps=2, pretrain_bs=4,
                            epochs=1, siam_epochs=1, bs=4)
    enc, row = cussp.learner.pretrain(x, x[:4], cfg, cussp.data.PatchAug(), "t")
    assert row["n_cines"] == 12 and row["epochs"] == 1
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    learn, logs = cussp.learner.fit("CUSSP-SIAM", {"cycle": enc}, (x, y), (x[:4], y[:4]), cfg, cussp.data.PatchAug())
    after = learn.model.net.state_dict()
    moved = {k.split(".")[1] for k in before if k.startswith("encoder.") and not torch.equal(before[k], after[k])}
    assert moved == {"layer4"}  # frozen layers keep their weights and their BatchNorm statistics
    assert [r["stage"] for r in logs] == ["CUSSP-SIAM siamese", "CUSSP-SIAM classifier"]
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())  # the shared encoder is untouched
    s = cussp.learner.scores(learn.model, x)
    path = cussp.learner.save(learn, tmp_path / "siam.model")
    assert np.allclose(cussp.learner.scores(cussp.learner.load(path), x), s, atol=1e-6)
    with pytest.raises(ValueError, match="unknown CUSSP row"):
        cussp.learner.fit("CUSSP-9", {"cycle": enc}, (x, y), (x[:4], y[:4]), cfg, cussp.data.PatchAug())


@pytest.mark.parametrize("stem, side", [("authors", 4), ("torchvision", 1)])
def test_the_authors_stem_keeps_the_patch_resolution_to_the_last_stage(stem, side):
    """The authors' 3x3 stride-1 first convolution without max-pool leaves a 32-px patch 4 x 4 at layer4, the
    torchvision stem 1 x 1; an unknown stem is refused."""
    enc = CUSSPNet(frames=5, width=8, proj_dims=(16, 16), hidden=8, input_px=32, stem=stem).encoder
    x = torch.rand(2, 5, 32, 32)
    h = enc.maxpool(enc.relu(enc.bn1(enc.conv1(x))))
    for layer in (enc.layer1, enc.layer2, enc.layer3, enc.layer4):
        h = layer(h)
    assert h.shape[-2:] == (side, side) and enc(x).shape == (2, 64)
    with pytest.raises(ValueError, match="stem"):
        CUSSPNet(frames=5, width=8, stem="vgg")


def test_a_frame_shift_rolls_the_cycle_by_at_most_its_size():
    """`shift` turns the cine's start into a nuisance: frames roll cyclically by up to `shift` either way, seeded."""
    x = np.arange(8, dtype=np.float32)[:, None, None].repeat(16, 1).repeat(16, 2) / 8
    aug = cussp.data.PatchAug(degrees=0, scale=(1, 1), translate=0, shift=2)
    rolls = set()
    for seed in range(40):
        a = aug(x, np.random.default_rng(seed))
        k = int(round(a[0, 8, 8] * 8))
        assert np.allclose(a[:, 8, 8], np.roll(x[:, 8, 8], -k if k < 4 else 8 - k), atol=1e-5)
        rolls.add(k)
        assert np.array_equal(a, aug(x, np.random.default_rng(seed)))
    assert rolls == {0, 1, 2, 6, 7}  # -2..2 frames
    assert cussp.data.PatchAug.make({"gamma": [0.8, 1.2], "shift": 1}).gamma == (0.8, 1.2)


def test_the_probe_reads_mr_from_frozen_features_and_not_from_shuffled_labels():
    """The gate's linear probe: a dark systolic "jet" in the MR cines is found from a random encoder's features
    (validation ROC-AUC near 1); with labels unrelated to the cines it stays near chance."""
    g = np.random.default_rng(0)
    x = g.random((80, 6, 32, 32)).astype(np.float32)
    y = np.array([0, 0, 0, 1] * 20)
    x[y == 1, 2:5, 10:22, 12:20] *= 0.2
    cfg = cussp.learner.CUSSPConfig(width=8, proj_dims=(16, 16), hidden=8, input_px=None)
    net, _ = cussp.learner.pretrain(x[:0], x[:4], cfg, cussp.data.PatchAug(), "random")
    assert cussp.learner.probe(net, (x[:48], y[:48]), (x[48:], y[48:])) > 0.9
    noise = g.permutation(y)
    assert abs(cussp.learner.probe(net, (x[:48], noise[:48]), (x[48:], noise[48:])) - 0.5) < 0.3
    assert np.isnan(cussp.learner.probe(net, (x[:48], y[:48] * 0), (x[48:], y[48:])))  # one class: no probe


def test_auc_gap_is_paired_over_draws_with_a_bootstrap_ci():
    g = np.random.default_rng(1)
    y = np.array([0] * 30 + [1] * 10)
    good, noise = y + g.normal(0, 0.3, 40), g.random(40)
    same = cussp.evaluate.auc_gap(y, [good, good], [good, good], n_boot=50)
    assert same["gap"] == 0 and same["ci_low"] == same["ci_high"] == 0
    gap = cussp.evaluate.auc_gap(y, [good, good], [noise, g.random(40)], n_boot=200)
    assert gap["gap"] > 0.3 and 0 < gap["ci_low"] < gap["gap"] < gap["ci_high"]
    assert np.isnan(cussp.evaluate.auc_gap(y * 0, [good], [noise])["gap"])


def test_a_label_budget_draws_its_mr_cines_and_the_training_share_of_the_others():
    lab = pd.DataFrame(dict(subject=[f"s{i:02d}" for i in range(40)], mr=[1] * 8 + [0] * 32))
    pick = cussp.curves.budget_subjects(lab, 4, seed=3)
    assert pick == cussp.curves.budget_subjects(lab, 4, seed=3) != cussp.curves.budget_subjects(lab, 4, seed=4)
    mr = set(lab.subject[lab.mr == 1])
    assert len(set(pick) & mr) == 4 and len(set(pick) - mr) == 16 and len(set(pick)) == 20


def test_a_pretrained_encoder_is_reused_only_for_the_same_cines_and_settings(tmp_path):
    """`Study._encoder` trains once and reads the saved encoder back for the same pool and settings; another pool
    or another setting trains again."""
    from types import SimpleNamespace

    g = np.random.default_rng(0)
    pool, valid = g.random((12, 4, 16, 16)).astype(np.float32), g.random((4, 4, 16, 16)).astype(np.float32)
    study = cussp.Study.__new__(cussp.Study)
    study.nb, study.p = SimpleNamespace(out=tmp_path), {}
    study.cfg = cussp.learner.CUSSPConfig(width=4, proj_dims=(8, 8), hidden=4, input_px=None, pretrain_steps=2,
                                  pretrain_bs=4)
    study.pretrain_augment = cussp.data.PatchAug()
    study.inputs = SimpleNamespace(xy=lambda inp, split: (valid, np.zeros(4)))
    net, row = study._encoder(pool, "window", "window")
    again, row2 = study._encoder(pool, "window", "window")
    assert not row["reused"] and row2["reused"]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert not study._encoder(pool[:8], "window", "window")[1]["reused"]
    study.cfg = cussp.learner.CUSSPConfig(**{**study.cfg.__dict__, "pretrain_lr": 3e-4})
    assert not study._encoder(pool[:8], "window", "window")[1]["reused"]


def test_cached_table1_measures_serve_only_the_segmenter_that_made_them():
    """After notebook 01 retrains, the forest's measures are made again (the segmenter's content key differs)."""
    from cmrlib.methods.cussp.evaluate import measures_reusable

    cached = pd.DataFrame(dict(subject=["a", "b"], anatomy="segmenter", made_by="key-1", LVEDV_auto=[1.0, 2.0]))
    assert measures_reusable(cached, ["a", "b"], "segmenter", "key-1")
    assert not measures_reusable(cached, ["a", "b"], "segmenter", "key-2")  # retrained
    assert not measures_reusable(cached.drop(columns="made_by"), ["a"], "segmenter", "key-1")  # made before keys
    assert not measures_reusable(cached, ["a", "b", "c"], "segmenter", "key-1")
    assert not measures_reusable(cached, ["a"], "labels", "key-1") and not measures_reusable(None, [], "x", "k")


def test_the_pool_curve_pretrains_on_each_fraction_of_the_pool_and_reuses_table2s_row_for_the_whole(monkeypatch):
    """A fraction between 0 and 1 (the paper profile's) draws that share of the pool, pretrains on it and trains
    CUSSP-SIAM-25 from it; the whole pool is Table 2's own row, never trained again."""
    from types import SimpleNamespace

    from cmrlib.methods.cussp import curves

    lab = pd.DataFrame(dict(subject=[f"s{i}" for i in range(8)], mr=[0, 1] * 4))
    x, y = np.random.default_rng(0).random((8, 3, 4, 4)).astype(np.float32), lab.mr.to_numpy()
    inputs = curves.Inputs({}, {"window": {k: (x, y, lab) for k in ("train", "valid", "eval")}}, [])
    pools = []
    monkeypatch.setattr(curves, "fit_siamese", lambda enc, tr, va, cfg, aug, tag: (SimpleNamespace(model=enc),
                                                                                 [dict(row=tag)]))
    monkeypatch.setattr(curves, "scores", lambda model, xs: y[:len(xs)] * model + np.arange(len(xs)) / 100)

    def encoder(pool, tag):
        pools.append(len(pool))
        return 0.5, dict(row=tag)

    how = curves.Training(cfg=None, aug=None, seed=0, n_boot=0)
    curve = curves.pool_curve(inputs, np.zeros((10, 3, 4, 4), np.float32), [0.5, 1.0], ((y, y * 1.0), 0.5),
                              lambda: None, encoder, how)
    assert pools == [5] and sorted(set(curve.table.pool_cines)) == [5, 10]
    assert curve.logs == [dict(row="window 0.50"), dict(row="CUSSP-SIAM-25 pool 0.50")] and not curve.failed
    assert curves.pool_curve(inputs, np.zeros((10, 3, 4, 4)), [], None, lambda: None, encoder, how).table.empty
