"""SSLHF (notebook 05): labels by the 50 % rule, LV patches, folds, the flips, Tables I-III from predictions, and
one tiny fold trained end to end."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cmrlib import results
from cmrlib.labels import LV
from cmrlib.methods import sslhf
from cmrlib.methods.sslhf import crossval
from cmrlib.phantom import make_cohort
from cmrlib.record import Cine
from cmrlib.store import fold_roles
from cmrlib.stats import accuracy_threshold
from cmrlib.tables import TableError

HF = dict(p_hfref=0.5, p_hfpef=0.5, p_hcm=0.0, hfref_ef=[38, 10, 15, 60], hfpef_ef=[56, 7, 40, 75])


@pytest.fixture(scope="module")
def hf_store(tmp_path_factory):
    """Six SAX-only heart-failure phantom patients with overlapping LVEFs."""
    return make_cohort(tmp_path_factory.mktemp("sslhf") / "hf", n=6, seed=5, views=("SAX",), start=50, workers=1,
                       progress=False, n_frames=16, matrix=64, pixel_mm=3.0, **HF)


def stack_with_lv(t=16, z=4, size=48, lv_slices=(1, 2), centre=(30, 20)) -> tuple[Cine, np.ndarray]:
    """A toy SAX stack whose LV is a bright disc (radius 6 px) on some slices, with its ED labels."""
    yy, xx = np.indices((size, size))
    disc = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= 36
    pix = np.random.default_rng(0).normal(0, 0.05, (t, z, size, size)).astype(np.float32)
    lab = np.zeros((z, size, size), np.uint8)
    for s in lv_slices:
        pix[:, s][:, disc] += 1.0
        lab[s][disc] = LV
    cine = Cine(subject="s1", view="SAX", pixels=pix, spacing=(10.0, 2.0, 2.0), frame_times=np.arange(t) * 40.0,
                ed=0, es=5)
    return cine, lab


def test_labels_follow_the_50_percent_rule_on_the_measured_lvef(hf_store):
    lab = sslhf.data.hf_labels(hf_store)
    m = hf_store.manifest().drop_duplicates("subject").set_index("subject")
    assert len(lab) == 6 and set(m.hf_class) <= {"HFrEF", "HFpEF"}
    assert (lab.hfref == (lab.lvef < 50)).all()
    assert np.allclose(lab.set_index("subject").lvef, m.lv_ef_measured.reindex(lab.subject))
    assert not (lab.lvef == lab.lvef_true).all()  # measured = truth + error


def test_labels_table_checks_names_and_records(tmp_path, hf_store):
    subs = sorted(hf_store.manifest().subject.unique())
    good = tmp_path / "labels.csv"
    pd.DataFrame(dict(subject=[subs[0], subs[1], "nobody"], lvef=[35.0, 62.0, 40.0])).to_csv(good, index=False)
    lab = sslhf.data.hf_labels(hf_store, good)
    assert lab.set_index("subject").hfref.to_dict() == {subs[0]: 1, subs[1]: 0}
    assert lab.attrs["unknown"] == ["nobody"] and set(lab.attrs["unlabelled"]) == set(subs[2:])
    cls = tmp_path / "classes.csv"
    pd.DataFrame(dict(subject=[subs[0]], hf_class=["HFpEF"])).to_csv(cls, index=False)
    assert sslhf.data.hf_labels(hf_store, cls).hfref.tolist() == [0]
    for bad, msg in ((dict(subject=[subs[0]], lvef=[140.0]), "line 2, column lvef: not a percentage"),
                     (dict(subject=[subs[0]], hf_class=["HFmrEF"]), "column hf_class: not one of HFpEF, HFrEF"),
                     (dict(patient=[subs[0]], lvef=[40.0]), r"lacks the column\(s\) \['subject'\]"),
                     (dict(subject=[subs[0], subs[0]], lvef=[40.0, 41.0]), "lines 2 and 3 give the same subject")):
        f = tmp_path / "bad.csv"
        pd.DataFrame(bad).to_csv(f, index=False)
        with pytest.raises(TableError, match=msg):
            sslhf.data.hf_labels(hf_store, f)


def test_patch_is_centred_on_the_lv_of_each_lv_slice_and_z_scored():
    cine, lab = stack_with_lv()
    x, slices = sslhf.data.preprocess(cine, lab, size=16, patch_mm=2.0, n_frames=32, max_slices=3)
    assert slices == [1, 2] and x.shape == (2, 32, 16, 16)
    assert np.allclose(x.mean(axis=(1, 2, 3)), 0, atol=1e-4) and np.allclose(x.std(axis=(1, 2, 3)), 1, atol=1e-3)
    centre = x[0, 0, 6:10, 6:10].mean()
    corner = x[0, 0, :3, :3].mean()
    assert centre > corner + 1.0  # the bright LV disc sits at the patch centre
    assert sslhf.data.pick_slices(list(range(10)), 3) == [0, 4, 9] and sslhf.data.pick_slices([2, 5], None) == [2, 5]


def test_bad_cines_raise_a_typed_error_naming_the_cine():
    cine, lab = stack_with_lv(lv_slices=())
    with pytest.raises(sslhf.data.PatchError, match="s1_SAX: no slice with the LV"):
        sslhf.data.preprocess(cine, lab)
    short, lab = stack_with_lv(t=8)
    with pytest.raises(sslhf.data.PatchError, match="8 frames, fewer than the 16"):
        sslhf.data.preprocess(short, lab)
    flat = Cine(subject="s2", view="SAX", pixels=np.zeros((16, 8, 8)), spacing=(2.0, 2.0), frame_times=np.arange(16.0))
    with pytest.raises(sslhf.data.PatchError, match="not a SAX stack"):
        sslhf.data.preprocess(flat, np.zeros((1, 8, 8)))


def test_preprocess_store_records_failures_and_round_trips(tmp_path, hf_store):
    ids = hf_store.select(view="SAX")

    def segment(cine):
        """LV = the central disc on every slice except for the first subject (no LV: recorded, not dropped)."""
        lab = np.zeros(cine.pixels.shape, np.uint8)
        if cine.subject != "ph0051":
            yy, xx = np.indices(cine.pixels.shape[-2:])
            lab[..., (yy - 32) ** 2 + (xx - 32) ** 2 <= 64] = LV
        return lab

    ps = sslhf.data.preprocess_store(hf_store, segment, ids, progress=False, size=16, patch_mm=4.0, n_frames=16,
                                max_slices=2)
    assert len(ps) == 10 and set(ps.failures.subject) == {"ph0051"} and "no slice" in ps.failures.reason[0]
    ps.save(tmp_path / "p.npz", dict(size=16))
    back = sslhf.data.HFPatches.load(tmp_path / "p.npz", dict(size=16))
    assert np.array_equal(back.x, ps.x) and list(back.subject) == list(ps.subject) and len(back.failures) == 1
    assert sslhf.data.HFPatches.load(tmp_path / "p.npz", dict(size=32)) is None
    assert set(ps.take(["ph0052"]).subject) == {"ph0052"}


def test_folds_group_patients_stratify_and_rotate():
    labels = pd.DataFrame(dict(subject=[f"p{i:02d}" for i in range(30)], hfref=[1] * 10 + [0] * 20))
    folds = sslhf.data.patient_folds(labels, 5, seed=1)
    assert folds.value_counts().tolist() == [6] * 5
    assert (labels.assign(f=labels.subject.map(folds)).groupby("f").hfref.sum() == 2).all()
    roles = fold_roles(4)
    assert roles == dict(test=[4], valid=[0], train=[1, 2, 3])
    with pytest.raises(ValueError, match="at least 3 folds"):  # two folds would train on no patient
        sslhf.data.patient_folds(labels, 2)
    parts = crossval.fold_patients(labels, folds, 0, fraction=0.5, seed=0)
    assert len(parts["train"]) == 9 and parts["train"].hfref.sum() == 3 and len(parts["test"]) == 6
    assert not set(parts["train"].subject) & (set(parts["valid"].subject) | set(parts["test"].subject))
    with pytest.raises(sslhf.data.HFLabelsError, match="5 patients of each class"):
        sslhf.data.patient_folds(labels.iloc[6:], 5)


def test_cine_flip_is_invertible_and_the_datasets_are_seeded():
    x = np.random.default_rng(0).random((4, 6, 6)).astype(np.float32)
    for f in (sslhf.data.CineFlip(True, False, True, 1), sslhf.data.CineFlip(False, True, False, 3), sslhf.data.random_flip(
            np.random.default_rng(2))):
        assert np.array_equal(f.inverse(f(x)), x)
    assert np.array_equal(sslhf.data.CineFlip(flip_t=True)(x), x[::-1])
    a = sslhf.data.Restoration(np.stack([x, x]), ("frame",), seed=3)
    b = sslhf.data.Restoration(np.stack([x, x]), ("frame",), seed=3)
    (ca, oa), (cb, ob) = a[0], b[0]
    assert np.array_equal(ca, cb) and np.array_equal(oa, ob) and ca.shape == (1, 4, 6, 6)
    covered = [t for t in range(4) if not np.array_equal(ca[0, t], oa[0, t])]
    assert covered and all(np.array_equal(ca[0, t], oa[0, t]) for t in range(4) if t not in covered)


def fake_predictions(rows=("SSLHF", "A: no proxy"), folds=3, n=12, seed=0) -> pd.DataFrame:
    """Two patches per patient; SSLHF's scores separate the classes better than the other row's."""
    g = np.random.default_rng(seed)
    parts = []
    for f in range(folds):
        for split in ("valid", "test"):
            y = np.tile([0, 1], n // 2)
            for r, noise in zip(rows, (1.0, 3.0)):
                for z in (0, 1):
                    s = 1 / (1 + np.exp(-(2 * y - 1 + g.normal(0, noise, n))))
                    parts.append(pd.DataFrame(dict(row=r, fold=f, split=split, subject=[f"f{f}{split}{i}" for i in
                                                                                     range(n)], slice=z, y=y, score=s)))
    return pd.concat(parts, ignore_index=True)


def test_tables_average_folds_with_cis_and_patients_average_patches():
    pred = fake_predictions()
    pat = sslhf.evaluate.patient_scores(pred)
    one = pred[(pred.row == "SSLHF") & (pred.fold == 0) & (pred.split == "test") & (pred.subject == "f0test0")]
    assert pat.set_index(["row", "fold", "split", "subject"]).score[("SSLHF", 0, "test", "f0test0")] == pytest.approx(
        one.score.mean())
    fm = sslhf.evaluate.fold_metrics(pred)
    assert set(fm.level) == {"patch", "patient"} and len(fm) == 2 * 3 * 2
    summ = sslhf.evaluate.pooled_summary(pred, fm, seed=0, n_boot=200)
    s = summ[(summ.row == "SSLHF") & (summ.level == "patient") & (summ.metric == "auc")].iloc[0]
    test = pat[(pat.row == "SSLHF") & (pat.split == "test")]
    from sklearn.metrics import roc_auc_score
    assert s["mean"] == pytest.approx(roc_auc_score(test.y, test.score)) and s.folds == 3  # pooled out of fold
    assert 0 <= s.ci_low <= s["mean"] <= s.ci_high <= 1 and s.paper == pytest.approx(0.8505)
    assert summ[["ci_low", "ci_high"]].stack().between(0, 1).all()  # an interval of an AUC or an accuracy
    t = sslhf.evaluate.table(summ, ["A: no proxy", "SSLHF"])
    assert list(t.index) == ["A: no proxy", "SSLHF"] and t.loc["SSLHF", "patient AUC (paper)"] == 0.8505
    d = sslhf.evaluate.differences(fm)
    assert d.row.tolist() == ["A: no proxy"] and d.difference.iloc[0] > 0 and d.folds.iloc[0] == 3
    roc = sslhf.evaluate.mean_roc(pred, "patient")
    assert roc.groupby("row").fpr.size().tolist() == [101, 101] and (roc.tpr.between(0, 1)).all()


def test_accuracy_threshold_is_chosen_between_scores():
    assert accuracy_threshold([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9]) == pytest.approx(0.45)
    assert accuracy_threshold([0, 1, 0, 1], [0.1, 0.3, 0.5, 0.8]) == pytest.approx(0.65)


def test_one_tiny_cross_validation_runs_the_rows_and_exports(tmp_path):
    g = np.random.default_rng(0)
    labels = pd.DataFrame(dict(subject=[f"p{i}" for i in range(10)], hfref=[1, 0] * 5, lvef=np.nan))
    x = g.normal(0, 1, (10, 32, 32, 32)).astype(np.float32)
    patches = sslhf.data.HFPatches(x, labels.subject.to_numpy(), np.zeros(10, int))
    folds = sslhf.data.patient_folds(labels, 3)
    cfg = sslhf.learner.SSLHFConfig(widths=(2, 2, 4, 4, 4), hidden=(4, 4), proxy_steps=1, proxy_bs=4, epochs=2, bs=4,
                            lrs=(1e-4, 1e-3), patience=1, resnet_widen=0.0625, densenet_init=8, densenet_growth=4,
                            groups=2)
    rest, log = sslhf.learner.pretrain(x[:8], x[8:], cfg, ("patch",))
    assert log["n_patches"] == 8 and np.isfinite(log["train_loss"])
    restorers = {r: rest for r in sslhf.learner.PROXIES}
    rows = ("SSLHF", "3D DenseNet-121")
    pred, logs, kept = crossval.cross_validate(patches, labels, folds, rows, cfg, lambda f: restorers, progress=False)
    assert set(pred.row) == set(rows) and len(logs) == 2 * 3 and set(kept) == {("SSLHF", f) for f in range(3)}
    for log in logs:  # every rate tried, the one with the lowest validation loss kept
        tried = json.loads(log["lr_search"])
        assert set(tried) == {"0.0001", "0.001"} and tried[f"{log['lr']:g}"] == min(tried.values())
    chosen = crossval.chosen_rates(logs)
    again, again_logs, _ = crossval.cross_validate(patches, labels, folds, rows, cfg, lambda f: restorers,
                                                   keep=(), progress=False, chosen=chosen)
    assert all(json.loads(r["lr_search"]).keys() == {f"{chosen[(r['row'], r['fold'])]:g}"} for r in again_logs)
    gate = crossval.probe({"proxy": rest.encoder, "random": sslhf.learner.network("A: no proxy", cfg).encoder},
                          patches, labels, folds)
    assert len(gate) == 2 * 3 * 5 and gate.auc.between(0, 1).all() and (gate.valid_patients > 0).all()
    assert sorted(gate.level.unique()) == [1, 2, 3, 4, 5] and (gate.deepest == (gate.level == 5)).all()
    assert pred.score.between(0, 1).all() and (pred.groupby(["row", "split"]).subject.nunique() == 10).all()
    net = sslhf.learner.network("SSLHF", cfg, restorers)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(net.encoder.state_dict().values(),
                                                                    rest.encoder.state_dict().values()))
    path = sslhf.learner.save(kept[("SSLHF", 0)], tmp_path / "m.model")
    model = sslhf.learner.load(path)
    assert np.allclose(sslhf.learner.scores(model, x[:3]), sslhf.learner.scores(kept[("SSLHF", 0)], x[:3]), atol=1e-6)
    with pytest.raises(ValueError, match="pretrain it first"):
        sslhf.learner.network("B: no frame covering", cfg, {})


def test_rates_chosen_on_the_first_fold_train_the_folds_that_do_not_test_its_choosers():
    """With lr_from_first_fold folds 0 and 1 search (fold 1 tests fold 0's validation patients, so it chooses on
    its own); fold 2 trains at the rate each row kept in fold 0."""
    g = np.random.default_rng(1)
    labels = pd.DataFrame(dict(subject=[f"p{i}" for i in range(9)], hfref=[1, 0, 1] * 3, lvef=np.nan))
    patches = sslhf.data.HFPatches(g.normal(0, 1, (9, 16, 16, 16)).astype(np.float32), labels.subject.to_numpy(),
                              np.zeros(9, int))
    cfg = sslhf.learner.SSLHFConfig(widths=(2, 2, 2, 2, 2), hidden=(2, 2), epochs=1, bs=4, lrs=(1e-4, 1e-2), patience=1,
                            min_epochs=1, resnet_widen=0.0625, groups=2, lr_from_first_fold=True)
    rows = ("A: no proxy", "3D ResNet-50")
    _, logs, _ = crossval.cross_validate(patches, labels, sslhf.data.patient_folds(labels, 3), rows, cfg, lambda f: {},
                                         keep=(), progress=False)
    by = {(r["row"], r["fold"]): r for r in logs}
    assert len(by) == 2 * 3 and all(r["status"] == "ok" for r in logs)
    for row in rows:
        for fold in (0, 1):
            assert set(json.loads(by[(row, fold)]["lr_search"])) == {"0.0001", "0.01"}
        assert json.loads(by[(row, 2)]["lr_search"]).keys() == {f"{by[(row, 0)]['lr']:g}"}


def test_the_predictor_scores_a_cine_through_its_patches_and_averages_the_folds(tmp_path):
    """Exported with its patch settings and its segmenter by reference, reloaded, it needs only the cine."""
    from cmrlib import predictor
    from cmrlib.methods import segmentation
    from cmrlib.models import unet11

    cine, lab = stack_with_lv(t=16, size=48)

    segmentation.Predictor({"SAX": unet11(6, width=0.0625)}).save(tmp_path / predictor.file_name("segmentation"))
    cfg = sslhf.learner.SSLHFConfig(widths=(2, 2, 4, 4, 4), hidden=(4, 4))
    folds = {k: sslhf.learner.network("A: no proxy", cfg) for k in (0, 1)}
    prep = dict(size=16, patch_mm=2.0, n_frames=16, min_frames=16, max_slices=3, min_lv_px=20, clip_pct=99.5)
    sslhf.Predictor.from_folds(folds, "A: no proxy", prep).save(tmp_path / "sslhf.predictor")
    p = predictor.load(tmp_path / "sslhf.predictor")
    p.need("segmenter").labels = lambda c: np.repeat(lab[None], c.n_frames, 0)  # the known LV on the ED frame
    out = p.predict(cine)
    assert out.detail["slices"] == [1, 2] and len(out.detail["folds"]) == 2
    assert out.measures["HFrEF probability"] == pytest.approx(np.mean(out.detail["folds"]))
    with pytest.raises(predictor.NotApplicable, match="SAX"):
        p.predict(Cine(subject=cine.subject, view="4CH", pixels=cine.pixels[:, 0], spacing=cine.spacing[1:],
                       frame_times=cine.frame_times))


def test_a_fold_with_one_class_in_test_says_its_auc_is_not_testable():
    pred = fake_predictions()
    one_class = (pred.fold == 1) & (pred.split == "test")
    pred.loc[one_class, "y"] = 0
    fm = sslhf.evaluate.fold_metrics(pred)
    bad = fm[fm.fold == 1]
    assert bad.auc.isna().all() and bad.note.str.startswith("AUC not testable: 0 HFrEF and").all()
    assert (fm[fm.fold != 1].note == "").all() and fm[fm.fold != 1].auc.notna().all()
    summ = sslhf.evaluate.pooled_summary(pred, fm, seed=0, n_boot=50)  # pooled, the one-class fold counts too
    assert (summ.folds == 3).all() and summ["mean"].notna().all()
    t = sslhf.evaluate.table(summ, ["SSLHF", "3D ResNet-50"], n_folds=3)
    assert "folds" not in t.loc["SSLHF", "patient AUC"] and t.loc["3D ResNet-50", "patient AUC"] == "failed"


def test_a_row_that_trains_into_nan_is_reported_and_left_out_while_the_others_go_on(monkeypatch):
    learner_module = sslhf.learner.fit.__globals__
    make = learner_module["_classifier"]

    def classifier(row, cfg, restorers=None):
        net = make(row, cfg, restorers)
        if row == "A: no proxy":  # diverged weights: every loss of this row is NaN
            net.head[0].weight.data.fill_(float("nan"))
        return net

    monkeypatch.setitem(learner_module, "_classifier", classifier)
    g = np.random.default_rng(1)
    labels = pd.DataFrame(dict(subject=[f"p{i}" for i in range(9)], hfref=[1, 0, 0] * 3, lvef=np.nan))
    x = g.normal(0, 1, (9, 16, 16, 16)).astype(np.float32)
    patches = sslhf.data.HFPatches(x, labels.subject.to_numpy(), np.zeros(9, int))
    folds = sslhf.data.patient_folds(labels, 3)
    cfg = sslhf.learner.SSLHFConfig(widths=(2, 2, 2, 2, 2), hidden=(2, 2), epochs=1, bs=4, resnet_widen=0.125)
    pred, logs, kept = crossval.cross_validate(patches, labels, folds, ("A: no proxy", "3D ResNet-50"), cfg,
                                               lambda f: {}, keep=("A: no proxy",), progress=False)
    failed = crossval.failures(logs)
    assert failed.row.tolist() == ["A: no proxy"] * 3 and failed.fold.tolist() == [0, 1, 2]
    assert failed.reason.str.contains("training loss nan at epoch 0").all()
    assert set(pred.row) == {"3D ResNet-50"} and np.isfinite(pred.score).all() and not kept
    assert [r["status"] for r in logs].count("ok") == 3
    fm = sslhf.evaluate.fold_metrics(pred)
    t = sslhf.evaluate.table(sslhf.evaluate.pooled_summary(pred, fm, n_boot=20), ["A: no proxy", "3D ResNet-50"], n_folds=3)
    assert (t.loc["A: no proxy", ["patch AUC", "patient AUC"]] == "failed").all()


def test_rows_and_folds_on_dask_give_the_tables_of_one_process():
    """Every (fold, row) seeds itself: run as Dask tasks (one torch thread each) it gives the rows, folds, splits and
    rates one process gives, and its scores to 1e-3 (a worker process's sums can differ in the last digits: the
    README's determinism statement)."""
    from cmrlib import dask_tasks

    g = np.random.default_rng(2)
    labels = pd.DataFrame(dict(subject=[f"p{i}" for i in range(9)], hfref=[1, 0, 0] * 3, lvef=np.nan))
    x = g.normal(0, 1, (9, 16, 16, 16)).astype(np.float32)
    patches = sslhf.data.HFPatches(x, labels.subject.to_numpy(), np.zeros(9, int))
    folds = sslhf.data.patient_folds(labels, 3)
    cfg = sslhf.learner.SSLHFConfig(widths=(2, 2, 2, 2, 2), hidden=(2, 2), epochs=2, bs=4, lrs=(1e-3,), patience=1)
    here, logs_here, _ = crossval.cross_validate(patches, labels, folds, ("A: no proxy",), cfg, lambda f: {},
                                                 keep=(), progress=False)
    with dask_tasks.client("local", 2) as c:
        there, logs_there, _ = crossval.cross_validate(patches, labels, folds, ("A: no proxy",), cfg, lambda f: {},
                                                       keep=(), progress=False, client=c)
    pd.testing.assert_frame_equal(here, there, check_exact=False, atol=1e-3, rtol=0)
    searched = [(json.loads(a["lr_search"]), json.loads(b["lr_search"])) for a, b in zip(logs_here, logs_there)]
    assert searched and all(a.keys() == b.keys() and a == pytest.approx(b, abs=1e-3) for a, b in searched)


def test_the_real_patients_section_runs_the_rows_on_a_real_cohort_by_its_own_folds(tmp_path):
    """A tiny phantom run and a tiny `acdc-cine/` folder: the real rows are trained and scored by the real cohort's
    patient folds, the gate chooses the SSLHF row's proxy, and the tables and checks say so."""
    from test_real_sax import cine_folder

    from cmrlib.phantom import make_cohort
    from cmrlib.store import CohortStore
    from cmrlib.methods.sslhf.real import real_checks

    make_cohort(tmp_path / "run" / "cohort", n=4, seed=0, views=("SAX",), n_frames=16, matrix=48, pixel_mm=4.0,
                progress=False)
    folder = cine_folder(tmp_path / "data", frames=16)
    ref = pd.read_csv(folder / "reference.csv")
    ref["LVEF"] = [30.0, 60.0] * (len(ref) // 2)  # both classes in every diagnosis
    ref.to_csv(folder / "reference.csv", index=False)
    rows = ["SSLHF", "A: no proxy"]
    study = sslhf.Study({"run_dir": str(tmp_path / "run"), "figures_dir": str(tmp_path / "figures"),
                         "data_dir": str(tmp_path / "data"), "anatomy": "labels", "threads": None,
                         "hf_patients": 9, "n_folds": 3, "rows": rows, "real_rows": rows, "max_slices": 1,
                         "min_lv_px": 5, "widths": [2, 2, 2, 2, 2], "hidden": [2, 2], "proxy_steps": 2,
                         "proxy_bs": 2, "epochs": 1, "bs": 4, "lrs": [1e-3], "patience": 1, "min_epochs": 1,
                         "real_proxy_steps": 1, "curve_fractions": []})
    real = study.real_patients()  # the cohort, patches, folds and the pool's proxy it needs: asked for by name
    assert list(real.index) == rows
    log = pd.read_csv(study.out / "real_train_log.csv")
    assert set(log.row) == set(rows) and set(log.fold) == {0, 1, 2} and (log.status == "ok").all()
    pred = pd.read_csv(study.out / "real_predictions.csv", dtype={"subject": str})
    real_subjects = set(CohortStore(tmp_path / "run" / "real_sax").manifest().subject) - {"acdc076"}  # 074's exam
    assert set(pred[pred.split == "test"].subject) == real_subjects  # every real patient tested, by its own fold
    assert pred[pred.split == "test"].groupby(["row", "subject"]).fold.nunique().max() == 1
    assert study.real_results.proxy in ("pool proxy", "pool + real proxy") or "folds" in study.real_results.proxy
    gate = pd.read_csv(study.out / "real_gate_probe.csv")
    assert set(gate.encoder) == {"pool proxy", "pool + real proxy", "random"}
    rows = results.targets_frame(real_checks(study.real_results, seed=0)).set_index("figure")
    assert len(rows) == 3
    gain = rows.loc["real patients: SSLHF minus A: no proxy (patient AUC)"]
    assert gain.test.startswith("paired patient bootstrap") and gain.n == len(real_subjects)
    assert gain.low <= gain.value <= gain.high or np.isnan(gain.value)


def test_a_fit_whose_dask_worker_dies_is_a_failed_row_and_the_others_keep_theirs(monkeypatch):
    from distributed import KilledWorker

    from cmrlib import dask_tasks

    def two_tasks(fn, items, client, args=(), **kw):  # the second task's workers all died (as past their memory)
        yield items[0], (dict(row="SSLHF", fold=0, status="ok"), None, None), None
        yield items[1], None, KilledWorker("fit-1", None, 3)

    monkeypatch.setattr(dask_tasks, "map_tasks", two_tasks)
    args = (None, None, None, None, {}, 0.5, {}, ())  # patches, labels, folds, cfg, proxies, fraction, chosen, keep
    done = crossval._run_items([(0, "SSLHF"), (1, "SSLHF")], args, client=None, progress=False, fraction=0.5)
    assert done[(0, "SSLHF")][0]["status"] == "ok"
    log, preds, model = done[(1, "SSLHF")]
    assert (log["status"], log["row"], log["fold"], log["fraction"], preds, model) == ("failed", "SSLHF", 1, 0.5, None,
                                                                                        None)
    assert "fits_on_workers=False" in log["reason"]


@pytest.mark.parametrize("k", [3, 4, 5])
def test_no_fold_trains_at_a_rate_its_own_test_patients_chose(k):
    """With `lr_from_first_fold`, fold 0's validation patients choose each row's rate for the folds that do not
    choose their own: none of those folds tests on them, and the fold that does chooses on its own validation."""
    from cmrlib.methods.sslhf.crossval import _choosing_folds, _first_fold_rates
    from cmrlib.store import fold_roles
    choosers = fold_roles(0, k)["valid"]
    done = {(0, "SSLHF"): (dict(status="ok", lr=3e-4), None, None)}
    reused = _first_fold_rates(done, k)
    assert set(choosers) <= set(_choosing_folds(k))
    assert all(fold_roles(f, k)["test"][0] not in choosers for _, f in reused)
    assert {f for _, f in reused} == set(range(k)) - set(_choosing_folds(k))


def test_the_measurement_row_is_the_50_percent_rule_on_each_test_patient():
    from cmrlib.methods.sslhf.evaluate import MEASUREMENT, fold_metrics, measurement_rows, pooled_summary

    subjects = [f"p{i}" for i in range(8)]
    lvef = pd.Series([20.0, 35.0, 49.0, 52.0, 60.0, 45.0, 70.0, np.nan], index=subjects)
    y = (lvef < 50).astype(int).to_numpy().copy()
    y[3] = 1  # a reduced patient the segmenter measures at 52 %: a miss of the rule
    rows = []
    for fold in (0, 1):
        for i, s in enumerate(subjects):
            split = "test" if i % 2 == fold else "valid"
            rows += [dict(row="SSLHF", fold=fold, fraction=1.0, split=split, subject=s, slice=k, y=y[i], score=0.3)
                     for k in range(3)]  # three patches per patient
    pred = pd.DataFrame(rows)
    m = measurement_rows(pred, lvef)
    assert set(m.row) == {MEASUREMENT} and set(m.split) == {"test"}
    assert sorted(m.subject) == subjects[:7]  # one row per patient measured; p7 has no LVEF
    assert m.set_index("subject").score["p2"] > 0.5 > m.set_index("subject").score["p3"]
    fm = fold_metrics(m)
    assert (fm.threshold == 0.5).all()  # no validation rows: the threshold is the 50 % rule's
    acc = pooled_summary(m, fm, n_boot=50).query("level == 'patient' and metric == 'acc'")["mean"].iloc[0]
    assert acc == pytest.approx(6 / 7)
