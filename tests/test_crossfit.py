"""Notebook 01's cross-fitted SAX segmenters: folds that follow the real SAX cohort's, the roles within a fold, and
every subject read by the model of its own fold, never by one that saw it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cmrlib.methods.segmentation import crossfit


def test_folds_keep_the_real_cohorts_and_deal_the_other_patients_by_diagnosis():
    groups = {f"acdc{i:03d}": g for i, g in zip(range(1, 41), ["DCM", "HCM", "MINF", "NOR", "RV"] * 8)}
    groups |= {"acdc074": "NOR", "acdc076": "NOR"}
    cine = {s: i % 5 for i, s in enumerate(sorted(groups)[:20])} | {"acdc074": 3}  # 076 left out, as the cohort does
    folds = crossfit.acdc_folds(groups, cine, 5, seed=0)
    assert set(folds) == set(groups) and all(folds[s] == f for s, f in cine.items())
    assert folds["acdc076"] == folds["acdc074"] == 3  # one exam, one fold
    rest = [s for s in groups if s not in cine and s != "acdc076"]
    dealt = pd.Series({s: folds[s] for s in rest})
    assert dealt.value_counts().max() - dealt.value_counts().min() <= 1  # the others dealt evenly
    by_group = pd.DataFrame(dict(fold=dealt, group=[groups[s] for s in rest]))
    assert (by_group.groupby("group").fold.nunique() >= 3).all()  # each diagnosis spread over the folds
    assert crossfit.acdc_folds(groups, cine, 5, seed=0) == folds  # a pure function of its inputs


def test_a_fold_trains_on_the_others_and_calibrates_on_their_validation_patients():
    folds = {"a": 0, "b": 0, "c": 1, "d": 1, "e": 2}
    splits = {"a": "valid", "b": "train", "c": "valid", "d": "test", "e": "train"}
    assert crossfit.fold_subjects(folds, splits, 0) == dict(train=["d", "e"], valid=["c"], test=["a", "b"])
    assert crossfit.fold_subjects(folds, splits, 2) == dict(train=["b", "d"], valid=["a", "c"], test=["e"])


class _Seg:
    """A stand-in segmentation Predictor: its labels say which SAX net read the cine."""

    def __init__(self, nets, prep=None, needs=None, provenance=None, model="seg"):
        self.nets, self.prep, self.needs, self.provenance, self.model = nets, prep or {}, needs or {}, provenance, model

    labels_folder = None

    def keep_labels_in(self, folder):
        self.labels_folder = folder
        return self

    def labels(self, cine, entropy=None):
        return np.full(2, self.nets["SAX"])

    def reads(self, view):
        return view == "SAX"


def test_each_subject_is_read_by_the_model_of_its_own_fold():
    cf = crossfit.CrossFitted(_Seg({"SAX": -1, "LAX": 9}), {0: 10, 1: 11}, {"x": 0, "y": 1})
    assert cf.labels(SimpleNamespace(subject="y")).tolist() == [11, 11]
    assert cf.labels(SimpleNamespace(subject="x")).tolist() == [10, 10]
    assert cf.for_subject("y").nets["LAX"] == 9 and "fold 1" in cf.for_subject("y").model
    assert cf.for_subject("y") is cf.for_subject("y")  # one Predictor per fold, its labels memo kept
    assert cf.labels(SimpleNamespace(subject="z")).tolist() == [10, 10]  # in no fold: no model trained on it
    kept = crossfit.CrossFitted(_Seg({"SAX": -1}).keep_labels_in("run/labels"), {0: 10, 1: 11}, {"x": 0, "y": 1})
    assert kept.for_subject("y").labels_folder == "run/labels"  # each fold's labels kept where the run keeps them


def test_the_folds_and_models_written_load_back_around_the_run_segmenter(tmp_path):
    from cmrlib.learn import export
    from cmrlib.methods.segmentation.predictor import Predictor
    from cmrlib.models import unet11

    nets = {k: unet11(width=0.125) for k in (0, 1)}
    for k, n in nets.items():
        export(n, tmp_path / "01" / "models" / f"seg_sax_real_fold{k}.model")
    base = Predictor.from_models({"SAX": unet11(width=0.125)}, provenance=dict(cross_fitted=str(crossfit.CROSSFIT)))
    assert crossfit.load(tmp_path, base) is None  # no cross-fitted models in this run
    path = crossfit.write(tmp_path, {"acdc002": 1, "acdc001": 0},
                          {k: f"models/seg_sax_real_fold{k}.model" for k in nets}, "sax_real")
    assert path == tmp_path / crossfit.CROSSFIT
    assert crossfit.load(tmp_path, Predictor.from_models({"SAX": unet11(width=0.125)})) is None  # not their recipe
    cf = base.cross_fitted(tmp_path)
    assert cf.folds == {"acdc001": 0, "acdc002": 1} and sorted(cf.fold_nets) == [0, 1]
    for k in (0, 1):
        got, want = cf.fold_nets[k].state_dict(), nets[k].state_dict()
        assert all(np.array_equal(got[n].numpy(), want[n].numpy()) for n in want)
    assert cf.content_key() != base.content_key()
    assert crossfit.load(tmp_path, Predictor.from_models({"LAX": unet11(width=0.125)})) is None  # no SAX to swap


def test_out_of_fold_targets_are_met_only_when_their_whole_interval_is():
    rows = [dict(subject=f"p{i}", structure=s, dice=d + (0.02 if i % 2 else -0.02), frame=f)
            for i in range(10) for s, d in (("LV", 0.95), ("MYO", 0.865), ("RV", 0.80)) for f in (0, 1)]
    t = {x.figure.split()[-2]: x for x in crossfit.dice_targets(pd.DataFrame(rows), seed=0)}
    assert t["LV"].met and t["LV"].n == 10 and t["LV"].low < 0.95 < t["LV"].high and "bootstrap" in t["LV"].test
    assert t["MYO"].value == pytest.approx(0.865) and t["MYO"].value > 0.86 and not t["MYO"].met  # interval straddles
    assert not t["RV"].met
    assert crossfit.dice_targets(pd.DataFrame(rows), seed=0) == crossfit.dice_targets(pd.DataFrame(rows), seed=0)
    c = crossfit.coverage_target("coverage", 0.9, 100)
    assert c.low < 0.85 < c.high and not c.met and crossfit.coverage_target("coverage", 0.97, 100).met


def test_the_shipped_models_evidence_is_its_recipes_out_of_fold_labels_where_they_exist():
    held = pd.Series(dict(LV=0.95, MYO=0.88, RV=0.90))
    rows, lines = crossfit.sax_evidence("sax_real", held, 15, None, 0, None)
    assert [r[0] for r in rows] == [f"shipped SAX model (sax_real): ACDC held-out {s} Dice"
                                    for s in ("LV", "MYO", "RV")]
    assert lines == ["SAX model (phantom + ACDC) on 15 held-out ACDC patients (manual masks, ED and ES): LV / MYO / RV "
                     "Dice 0.950 / 0.880 / 0.900"]
    scores = pd.DataFrame([dict(subject=f"p{i}", structure=s, dice=0.9) for i in range(4) for s in ("LV", "MYO", "RV")])
    rows, lines = crossfit.sax_evidence("sax_real", held, 15, scores, 5, None)
    assert [r.figure for r in rows] == [f"ACDC out-of-fold {s} Dice" for s in ("LV", "MYO", "RV")]
    assert len(lines) == 2 and "cross-fitted over 5 folds of ACDC, each of 4 patients" in lines[1]
    assert crossfit.sax_evidence("sax", None, 0, None, 0, None) == ([], [])  # the phantom model: no real evidence


def test_a_plain_reading_is_a_copy_that_reads_once_unmirrored_and_leaves_the_shipped_one_as_it_is():
    """CUSSP's forest reads SAX stacks plainly (chosen on validation); every other method still reads them as the
    Predictor ships, so the plain copy shares the weights and changes only how it reads."""
    from cmrlib.methods.segmentation.predictor import Predictor
    from cmrlib.models import unet11

    net = unet11(width=0.125)
    net.tta, net.centred = True, True
    shipped = Predictor.from_models({"SAX": net, "LAX": unet11(width=0.125)})
    plain = shipped.plain()
    assert (plain.nets["SAX"].tta, plain.nets["SAX"].centred) == (False, False)
    assert (shipped.nets["SAX"].tta, shipped.nets["SAX"].centred) == (True, True)
    assert plain.nets["SAX"].state_dict().keys() == shipped.nets["SAX"].state_dict().keys()
    assert all(a is b for a, b in zip(plain.nets["SAX"].parameters(), shipped.nets["SAX"].parameters()))
    assert plain.nets["LAX"] is shipped.nets["LAX"]
