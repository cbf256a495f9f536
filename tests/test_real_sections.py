"""Each method's real-patient section (`methods/<m>/real.py`) on small synthetic inputs: no run folder, no real
data, no trained model."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest


def lax_table() -> pd.DataFrame:
    """A long-axis Dice summary: two models, two demo subjects, 4CH LV and MYO; the fine-tuned model trained on
    subject 1 (its Dice there highest)."""
    from cmrlib.methods.segmentation.evaluate import summarise

    rows = []
    for model, subject, structure, dice in [("lax", "1", "LV", 0.80), ("lax", "2", "LV", 0.84),
                                            ("lax", "1", "MYO", 0.60), ("lax", "2", "MYO", 0.66),
                                            ("lax_real", "1", "LV", 0.97), ("lax_real", "2", "LV", 0.90),
                                            ("lax_real", "1", "MYO", 0.95), ("lax_real", "2", "MYO", 0.72)]:
        rows += [dict(model=model, subject=subject, view="4CH", structure=structure, dice=dice + d, hd95=2.0,
                      is_ed=f == 0, is_es=f == 1) for f, d in enumerate((-0.01, 0.01))]
    return summarise(pd.DataFrame(rows), by=("model", "subject", "view", "structure"))


def test_the_long_axis_section_scores_each_model_only_on_subjects_it_never_trained_on():
    from cmrlib.methods.segmentation import real

    t = lax_table()
    assert real.held_out(t, "lax", "1") == ["1", "2"] and real.held_out(t, "lax_real", "1") == ["2"]
    assert real.dice_all(t, "lax_real", "2", "4CH", "LV") == pytest.approx(0.90)
    r = real.RealLax(models={"lax": None, "lax_real": None}, cines={}, preds={}, scores=pd.DataFrame(), table=t,
                     on_phantom=None)
    checks = real.lax_checks(r, "1")  # the fine-tuned model by default: subject 2 only, the structures it has
    assert [(name.split(" on ")[0], round(v, 3), op, target) for name, v, op, target in checks] == [
        ("lax_real", 0.90, ">=", 0.85), ("lax_real", 0.72, ">=", 0.70)]
    assert all("held-out 2 4CH" in name for name, *_ in checks)
    assert len(real.lax_checks(r, "1", model="lax")) == 4 and real.lax_checks(None, "1") == []
    line = real.lax_summary(t, "lax_real", "1")
    assert "fine-tuned" in line and "0.81" in line and "1 UK Biobank demo subject(s)" in line
    assert "phantom-only" in real.lax_summary(t, "lax", "1") and "2 UK Biobank" in real.lax_summary(t, "lax", "1")


def detector_rows(kinds: dict[str, tuple[int, int]], n: int = 9, folds: int = 3) -> pd.DataFrame:
    """Per-cine rows of detectors (name -> (ED, ES) frame error on every cine but the last, which is 1 worse at ED),
    on n cines dealt round the folds."""
    return pd.DataFrame([dict(method=method, cine_id=f"c{i}", fd_ed=ed + (i == n - 1), fd_es=es, n_frames=25,
                              fold=i % folds) for method, (ed, es) in kinds.items() for i in range(n)])


def test_the_ed_es_section_ships_the_rules_pick_and_scores_the_rule_by_nested_cross_validation():
    from cmrlib.methods.edes import real
    from cmrlib.methods.edes.evaluate import real_afd_table

    kinds = real.detector_kinds([1, 3], 20)
    assert list(kinds)[0] == real.run_curve(1) and real.combined(3) in kinds and real.NETWORK_ROW in kinds
    assert kinds[real.run_curve(3, "hybrid")][:3] == ("volume curve", 3, "hybrid")
    assert all(len(v) == 5 for v in kinds.values())
    res = detector_rows({real.run_curve(1): (2, 2), real.NETWORK_ROW: (0, 0), "Seam control": (5, 5)})
    shipped, choice, picks, table = real.ship(res, kinds, short_frames=20, seed=0)
    assert shipped == real.NETWORK_ROW  # the simplest (the curve) is two frames worse: not within one SE
    assert choice.set_index("method").chosen.to_dict() == {real.run_curve(1): False, real.NETWORK_ROW: True}
    assert set(choice.n) == {9} and picks.chosen.tolist() == [real.NETWORK_ROW] * 3
    assert picks[["chosen_on", "scored_on"]].values.tolist() == [[6, 3]] * 3  # no fold chose its own detector
    t = table.set_index("method")
    assert set(t.index) == {real.run_curve(1), real.NETWORK_ROW, "Seam control", real.PROCEDURE}
    assert t.loc[real.PROCEDURE, "aFD_ES"] == 0 and t.loc[real.PROCEDURE, "n"] == 9
    assert t.loc["Seam control", "diff_ES"] == pytest.approx(5) and np.isnan(t.loc[real.PROCEDURE, "diff_ES"])
    line = real.check_line(table, res, 9, 3)
    assert line.startswith("9 real ACDC SAX cines (cyclically shifted), 3 folds") and "aFD ED 0.11, ES 0.00" in line
    assert real.ship(res.assign(fold=0), kinds, 20, 0)[1].empty  # one fold: nothing to choose without it
    afd = real_afd_table(res)  # every cine, out of fold
    assert "5-fold by patient" in real.check_line(pd.DataFrame(), afd, 9, 3)
    assert real.check_line(pd.DataFrame(), afd[afd.method != real.NETWORK_ROW], 9, 3) is None


def test_the_rules_nested_row_reads_each_fold_with_the_pick_made_without_it():
    """Where the rule's pick depends on the folds it sees, each fold's cines are read by the pick made on the others:
    the nested row mixes detectors, and its error is what choosing costs."""
    from cmrlib.methods.edes import real

    rows = []
    for i in range(9):  # the curve is worse than the network on fold 0's cines only
        fold = i % 3
        rows += [dict(method=real.run_curve(1), cine_id=f"c{i}", fd_ed=0, fd_es=3 if fold == 0 else 0, fold=fold,
                      n_frames=25),
                 dict(method=real.NETWORK_ROW, cine_id=f"c{i}", fd_ed=0, fd_es=0, fold=fold, n_frames=25)]
    res = pd.DataFrame(rows)
    picks, nested = real.nested(res, [real.run_curve(1), real.NETWORK_ROW])
    assert picks.set_index("fold").chosen.to_dict() == {0: real.run_curve(1), 1: real.NETWORK_ROW,
                                                        2: real.NETWORK_ROW}
    assert set(nested.method) == {real.PROCEDURE} and len(nested) == 9
    assert nested.groupby("fold").fd_es.mean().to_dict() == {0: 3, 1: 0, 2: 0}  # fold 0 read by the curve it missed


def test_every_notebook_rolls_a_patients_cine_the_same_way():
    """`io.real.rolled_cine` draws the roll from the run seed and the patient alone: the same whichever cohort subset
    a notebook reads, so 02 and 07 score one detector on one cine."""
    from cmrlib.io.real import rolled_cine

    class Store:
        def read(self, cine_id):
            from cmrlib.record import Cine
            return Cine(cine_id[:-4], "SAX", np.arange(20, dtype=np.float32).reshape(20, 1, 1, 1)
                        * np.ones((1, 1, 4, 4), np.float32), (8.0, 1.0, 1.0), np.arange(20) * 40.0, ed=0, es=7)

    row = lambda s: SimpleNamespace(subject=s, cine_id=f"{s}_SAX", n_frames=20)  # noqa: E731
    a, b = rolled_cine(Store(), row("acdc001"), 0), rolled_cine(Store(), row("acdc001"), 0)
    assert a.ed == b.ed and (a.es - a.ed) % 20 == 7 and a.pixels[a.ed, 0, 0, 0] == 0
    assert {rolled_cine(Store(), row(f"acdc{i:03d}"), 0).ed for i in range(1, 30)} != {a.ed}  # rolls differ


def test_the_ed_es_per_cine_table_adds_the_averaged_rows_and_each_cines_patient_and_fold():
    from cmrlib.methods.edes import real

    def rows(method, ed, es):
        return pd.DataFrame([dict(method=method, cine_id=f"c{i}", ed=0, es=10, ed_pred=ed, es_pred=es, fd_ed=ed,
                                  fd_es=abs(es - 10), n_frames=n, sec=0.5) for i, n in enumerate((30, 12))])

    cines = {"p1": SimpleNamespace(cine_id="c0"), "p2": SimpleNamespace(cine_id="c1")}
    res = real.per_cine([rows(real.NETWORK_ROW, 0, 8), rows(real.run_curve(1), 2, 10)], cines,
                        folds=pd.Series({"p1": 0, "p2": 3}), short_frames=20, curve_smooth=[1, 3])
    assert set(res.method) == {real.NETWORK_ROW, real.run_curve(1), real.combined(1)}  # smooth 3 was not run
    both = res[res.method == real.combined(1)].set_index("cine_id")
    assert both.loc["c0", "ed_pred"] == 1 and both.loc["c0", "es_pred"] == 9 and both.sec.tolist() == [1.0, 1.0]
    first = res.drop_duplicates("cine_id").set_index("cine_id")
    assert first.subject.to_dict() == {"c0": "p1", "c1": "p2"} and first.fold.to_dict() == {"c0": 0, "c1": 3}
    assert first.short.to_dict() == {"c0": False, "c1": True}


def test_the_mitral_valve_section_checks_only_held_out_cines_against_the_pseudo_annulus():
    from cmrlib.methods.mvnet import real

    tab = pd.DataFrame(dict(tracker=["phantom", "phantom", "fine-tuned", "fine-tuned"],
                            trained_on=[False, False, True, False], point_err_mm=[6.0, 2.0, 0.5, 3.0]))
    [(name, value, op, target)] = real.pseudo_check(tab)  # the fine-tuned tracker, its held-out cine alone
    assert "fine-tuned" in name and value == 3.0 and (op, target) == ("<=", real.ANNULUS_MM)
    assert real.pseudo_check(tab, "phantom")[0][1] == 4.0
    assert real.pseudo_check(tab.assign(point_err_mm=np.nan)) == [] and real.pseudo_check(None) == []
    assert real.pseudo_check(tab[tab.trained_on | (tab.tracker == "phantom")].assign(
        tracker=["fine-tuned"] * 3, trained_on=True)) == []
    unlabelled = SimpleNamespace(labels=None, spacing=(1.0, 1.0))
    assert real.with_references([("a", unlabelled)]) == [("a", unlabelled, None, None)]
    tuned, why = real.fine_tune_4ch([(SimpleNamespace(subject="2", view="4CH"), np.zeros((3, 2, 2)))], None, [], [],
                                    None, real.Tuning(epochs=2, share=0.2, subject="1", seed=0), None)
    assert tuned is None and "0 demo 4CH cines of '1'" in why


def test_the_cussp_section_finds_the_valve_or_says_why_and_scores_each_row(monkeypatch):
    from cmrlib.methods.cussp import real
    from cmrlib.methods.cussp.valve import ValveError

    def find(c):
        if c.n_frames == 1:
            raise ValveError("no LA border")
        return "labels"

    vp = SimpleNamespace(frame=0, valve=SimpleNamespace(center=(10.0, 10.0)))
    monkeypatch.setattr(real, "preprocess", lambda c, labels, **_: {"valve": vp, "patch": np.ones((2, 4, 4))})
    monkeypatch.setattr(real, "INPUTS", {"row": "patch", "none": "missing"})
    monkeypatch.setattr(real, "scores", lambda model, x: np.array([model * x.mean()]))
    monkeypatch.setattr(real, "valve_hinges", lambda lab: np.array([[7.0, 6.0], [7.0, 14.0]]))  # midpoint (7, 10)
    good = SimpleNamespace(n_frames=3, labels=np.zeros((3, 4, 4)), labelled=[True, False, False], spacing=(8, 2, 0.5))
    bad = SimpleNamespace(n_frames=1, labels=None, labelled=[False], spacing=(8, 1, 1))
    models = {"row": SimpleNamespace(model=0.25), "none": SimpleNamespace(model=1.0)}
    rows, cases = real.real_rows([("g", good), ("b", bad)], find, {}, {"row": models["row"]})
    rows = rows.set_index("cine")
    assert rows.loc["g", "valve"] == "found" and rows.loc["b", "valve"] == "not found: no LA border"
    assert rows.loc["g", "centre_from_pseudo_mm"] == pytest.approx(1.5)  # 3 columns from the midpoint at 0.5 mm each
    assert rows.loc["g", "P(MR) row"] == 0.25 and [c[0] for c in cases] == ["g"]
    checks = dict((name, (v, t)) for name, v, _, t in real.real_checks(rows.reset_index()))
    assert checks["real 4CH cines without a valve"] == (1, 0)
    assert list(checks.values())[1] == (pytest.approx(1.5), real.CENTRE_MM)
    assert real.real_checks(None) == []


def test_the_hf_section_keeps_per_fold_the_proxy_the_gate_ranks_first():
    from cmrlib.methods.sslhf import real

    labels = real.real_labels(pd.DataFrame(dict(subject=["a", "b"], LVEF=[23.0, 61.0], group=["DCM", "NOR"])))
    assert labels.hfref.tolist() == [1, 0] and labels.lvef_true.isna().all()
    gate = pd.DataFrame([dict(fold=f, encoder=e, deepest=True, auc=auc) for f, e, auc in
                         [(0, real.POOL, 0.7), (0, real.TUNED, 0.8), (0, real.RANDOM, 0.6),
                          (1, real.POOL, 0.9), (1, real.TUNED, 0.5), (1, real.RANDOM, 0.6)]]
                        + [dict(fold=0, encoder=real.POOL, deepest=False, auc=0.1)])
    kept = real.kept_proxies(gate, {0: "tuned0", 1: "tuned1"}, "pool", logs=["log"])
    assert kept.nets == {0: "tuned0", 1: "pool"} and kept.name == f"{real.TUNED} in 1 of 2 folds"
    assert kept.gate["kept"] == pytest.approx(0.85) and kept.gate[real.RANDOM] == pytest.approx(0.6)
    one = real.kept_proxies(gate[gate.fold == 1], {1: "tuned1"}, "pool", logs=[])
    assert one.name == real.POOL and one.nets == {1: "pool"}


def test_the_heartmae_section_reads_each_views_lv_area_and_encoder_features_over_its_windows():
    """Two cines (two slices, then one) of a 4-frame cycle: each view's mean LV area over each window of the cycle
    (slice z's LV covers (z + 1)(t + 1) px of 1 mm^2 at frame t) and its encoder features, in the views' order."""
    from cmrlib.labels import LV
    from cmrlib.methods.heartmae.real import segmenter_targets

    class Seg:
        def labels(self, cine):
            lab = np.zeros((4, 2, 8, 8), np.uint8)
            for t in range(4):
                for z in range(2):
                    lab[t, z].flat[: (z + 1) * (t + 1)] = LV
            return lab

        def encoder_features(self, cine, zs):
            return np.stack([np.stack([np.full(3, 10 * z + t, np.float32) for z in zs]) for t in range(4)])

    class Views:
        table = pd.DataFrame(dict(cine_id=["a", "a", "b"], view_id=["a:0", "a:1", "b:1"]))
        frames = np.zeros((3, 4, 8, 8))

        def __len__(self):
            return 3

    store = SimpleNamespace(read=lambda cid: SimpleNamespace(spacing=(10.0, 1.0, 1.0)))
    area, enc = segmenter_targets(Seg(), store, Views(), [(0, 2), (2, 4)], progress=False)
    assert area.tolist() == [[1.5, 3.5], [3.0, 7.0], [3.0, 7.0]]
    assert enc.shape == (3, 2, 3) and enc[1, 1, 0] == 12.5 and enc[2, 0, 0] == 10.5


def test_the_segmentation_section_calibrates_intervals_across_folds_and_reports_coverage_by_fold_and_diagnosis():
    """Out-of-fold measures of 40 patients in four folds: one interval per measure calibrated across folds, its
    record saying so, and the coverage per fold and diagnosis; without folds, across splits and no coverage table."""
    from cmrlib.methods.segmentation.real import sax_intervals

    r = np.random.default_rng(0)
    ref = r.normal(55, 10, 40)
    meas = pd.DataFrame(dict(subject=[f"p{i}" for i in range(40)], fold=np.repeat(range(4), 10),
                             group=np.tile(["NOR", "DCM"], 20), split=np.tile(["valid", "test"], 20),
                             LVEF_auto=ref + r.normal(0, 3, 40), LVEF_ref=ref))
    t, cover, scaling, record = sax_intervals(meas, {"LVEF": ("LVEF_auto", "LVEF_ref"),
                                                     "LAEF": ("LVEF_auto", "LVEF_ref")})
    assert list(t.index) == ["LVEF"] and record["LVEF"]["across"] == "fold" and record["LVEF"]["n"] == 40
    assert "cross-fitted" in record["LVEF"]["calibrated_on"] and 0 < record["LVEF"]["half_width"] < 15
    assert record["LVEF"]["scale"] == "none"  # errors that do not grow with the value: one width
    assert set(cover.measure) == {"LVEF"} and set(cover.by) == {"fold", "group"} and cover.n.sum() == 80
    procedure = scaling[(scaling.scale == "procedure, out of fold") & (scaling.group == "all")].iloc[0]
    assert record["LVEF"]["coverage_across"] == round(procedure.coverage, 3) and procedure.n == 40
    t, cover, scaling, record = sax_intervals(meas.drop(columns="fold"), {"LVEF": ("LVEF_auto", "LVEF_ref")})
    assert cover is None and scaling is None and record["LVEF"]["across"] == "split"
    assert record["LVEF"]["scale"] == "none"


def test_a_segmented_number_outside_human_bounds_is_listed_as_the_report_withholds_it():
    """acdc086's out-of-fold LVEF of -24.6 % is a failed segmentation: the research tables list it beside the
    agreement, and the measurement row of notebook 05 makes no call on it; so are the numbers read at an ES frame
    whose LV outgrows its ED extent."""
    from cmrlib.measure import ES_OVERSHOOT_ML
    from cmrlib.methods.segmentation import real
    from cmrlib.plausible import WITHHELD, check, outside_bounds

    meas = pd.DataFrame(dict(subject=["acdc086", "acdc001", "acdc002"], LVEF_auto=[-24.6, 55.0, np.nan],
                             LVEDV_auto=[120.0, 900.0, 150.0], LVEF_ref=[40.0, 56.0, 60.0]))
    withheld = real.withheld_measures(meas)
    assert withheld[["subject", "measure"]].values.tolist() == [["acdc086", "LVEF"], ["acdc001", "LVEDV"]]
    assert withheld.set_index("measure").loc["LVEF", ["low", "high"]].tolist() == [5, 90]
    grown = meas.assign(LVESV_auto=[100.0, 50.0, 60.0], **{ES_OVERSHOOT_ML: [20.0, 1.0, 30.0]})
    why = real.withheld_measures(grown).set_index(["subject", "measure"]).why
    assert set(why.index) == {("acdc086", "LVEF"), ("acdc086", "LVESV"), ("acdc002", "LVESV"), ("acdc001", "LVEDV")}
    # 1 mL of 50 is within the rule, and a missing LVEF stays missing
    assert why["acdc086", "LVEF"].startswith("outside human range 5-90 %; the LV cavity at ES outgrows")
    assert outside_bounds(meas.LVEF_auto, "LVEF", "%").tolist() == [True, False, False]  # missing: not a failure
    long = pd.DataFrame(dict(method="segmentation", measure=["LVEF", "LVEF"], value=[-24.6, 55.0], unit="%",
                             cine="SAX"))
    assert check(long, ["SAX"])[0].tier.tolist() == [WITHHELD, ""]  # the patient report withholds the same number
    from cmrlib.methods.sslhf.real import segmented_lvef

    five = pd.DataFrame({"LVEF_auto": [-24.6, 30.6, 60.0], "LVESV_auto": [100.0, 97.2, 50.0],
                         ES_OVERSHOOT_ML: [0.0, 15.7, 1.0]}, index=["acdc086", "acdc034", "acdc001"])
    assert segmented_lvef(five, 3).isna().tolist() == [True, True, False]  # 05's row calls neither failure
