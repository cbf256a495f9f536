"""Each method's target rows (`evaluate.phantom_checks`, `real.real_checks`) built from small results tables: no run
folder, no model."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cmrlib.results import Target, targets_frame


def by_name(rows) -> pd.DataFrame:
    return targets_frame(rows).set_index("figure")


def test_ed_es_checks_hold_tempreg_to_the_paper_and_the_ordering_only_when_all_three_ran():
    from cmrlib.methods.edes.evaluate import PAPER_AFD, TestResults, phantom_checks

    allv = pd.DataFrame({"aFD_ED": [0.2, 0.5, 1.0], "aFD_ES": [0.3, 0.6, 1.5]},
                        index=pd.Index(["TempReg-Net", "TempReg-Net w/o TSC", "CNN+Reg"], name="method"))
    order = list(allv.index)
    t = TestResults(pd.DataFrame(), pd.DataFrame(), allv, order, (allv.aFD_ED + allv.aFD_ES) / 2)
    rows = by_name(phantom_checks(t))
    assert rows.loc["TempReg-Net aFD ED (frames)", "target"] == PAPER_AFD["TempReg-Net"][0]
    assert rows.loc["paper's ordering: smallest step up in mean aFD", "value"] == pytest.approx(0.3)
    assert rows.met.all()
    two = TestResults(pd.DataFrame(), pd.DataFrame(), allv.iloc[:2], order[:2], t.mean_fd.iloc[:2])
    assert len(phantom_checks(two)) == 2  # no ordering without the third method


def test_ed_es_real_checks_read_the_rules_nested_row_and_the_demo_worst_frame():
    from cmrlib.methods.edes.real import NETWORK_ROW, PROCEDURE, real_checks

    demo = pd.DataFrame({"method": ["TempReg-Net", "TempReg-Net", "CNN+Reg"], "fd_ed": [1, 3, 9], "fd_es": [0, 2, 9]})
    row = dict(n=64, aFD_ES=0.9, ES_low=0.6, ES_high=1.2, ED_within_1=90.0)
    real = SimpleNamespace(table=pd.DataFrame([dict(method=NETWORK_ROW, **row)]),
                           procedure=pd.DataFrame([dict(method=PROCEDURE, **row)]))
    rows = by_name(real_checks(demo, real))
    worst = [f for f in rows.index if f.startswith("TempReg-Net on every UKBB")][0]
    assert rows.loc[worst, "value"] == 3 and not rows.loc[worst, "met"]
    nested = rows.loc["real SAX patients: the shipping rule by nested cross-validation, aFD ES (frames)"]
    assert (nested.low, nested.high, nested.n) == (0.6, 1.2, 64) and not nested.met  # its interval reaches past 1
    assert real_checks(None, None) == []


def test_mvnet_checks_compare_the_last_stage_with_the_first():
    from cmrlib.methods.mvnet.evaluate import phantom_checks

    agree = pd.DataFrame({"measure": ["MAPSE MVnet", "e' MVnet"], "icc2": [0.95, 0.90]})
    frames = pd.DataFrame({"stage": ["1", "1", "1+2+2", "1+2+2"], "err_mm": [2.0, 4.0, 1.0, 1.0],
                           "disp_err_mm": [0.0, 0.0, 0.05, -0.05]})
    rows = by_name(phantom_checks(agree, frames, 0.2))
    assert rows.loc["Euclidean error 1+2+2 vs 1 (mm)", "value"] == pytest.approx(-2.0)
    assert rows.loc["MAPSE ICC (MVnet vs ref)", "met"] and not rows.loc["e' ICC (MVnet vs ref)", "met"]


def test_sslhf_checks_count_collapsed_runs_and_pair_every_row_with_sslhf():
    from cmrlib.methods.sslhf.evaluate import collapsed_runs, phantom_checks

    g = np.random.default_rng(0)
    pred = pd.concat([pd.DataFrame({"row": r, "fold": f, "fraction": 1.0, "split": "test", "level": "patient",
                                    "subject": [f"s{f}{i}" for i in range(8)], "y": [0, 1] * 4,
                                    "score": 0.5 if r == "A: no proxy" and f == 0 else g.random(8)})
                      for r in ("SSLHF", "A: no proxy") for f in range(2)], ignore_index=True)
    assert collapsed_runs(pred, ["row", "fold"]) == 1
    summ = pd.DataFrame({"row": "SSLHF", "fraction": 1.0, "level": "patient", "metric": ["auc", "acc"],
                         "mean": [0.9, 0.8], "ci_low": [0.86, 0.7], "ci_high": [0.95, 0.9]})
    rows = by_name(phantom_checks(pred, summ, ["SSLHF", "A: no proxy"], pd.Series({"SSLHF proxy": 0.6,
                                                                                   "random": 0.5}), seed=0))
    assert rows.loc["SSLHF patient AUC", "met"] and not rows.loc["SSLHF patient ACC", "met"]
    assert rows.loc["SSLHF minus A: no proxy (patient AUC)", "n"] == 16
    assert rows.loc["gate: proxy minus random encoder, probe AUC on validation", "value"] == pytest.approx(0.1)


def test_heartmae_real_checks_take_the_per_fold_choice_when_the_folds_continued_pretraining():
    from cmrlib.methods.heartmae import real

    t = pd.DataFrame({"encoder": [real.PHANTOM, real.TUNED, real.CHOSEN, real.RANDOM],
                      "MAE": [9.0, 7.0, 7.5, 8.5], "ci_low": 5.0, "ci_high": 9.5, "n": 64,
                      "minus_random": [0.5, -1.5, -1.0, 0], "minus_random_low": -3.0,
                      "minus_random_high": [2.0, -1.2, -1.1, 0]})
    gate = pd.DataFrame({"readout": real.POOLED, "encoder": [real.CHOSEN, real.RANDOM], "cv_MAE": [7.0, 8.0]})
    pretext = pd.DataFrame({"model": [real.CHOSEN, "copy rule"], "masked_loss": [0.4, 0.5]})
    gain = pd.DataFrame({"encoder": [real.CHOSEN], "frames_minus_pooled": [-1.0], "ci_low": [-2.0],
                         "ci_high": [0.5], "n": [64]})
    r = real.RealLVEF(t, pd.DataFrame(), gate, pretext, pd.DataFrame(), gain)
    rows = by_name(real.real_checks(r))
    assert rows.loc["real patients: HeartMAE LVEF MAE (EF points)", "value"] == 7.5  # the procedure, not its best arm
    assert rows.loc["real patients: HeartMAE LVEF MAE minus the random encoder's (test, EF points)", "met"]  # all of [-3, -1.1]
    frames = rows.loc["real patients: HeartMAE frame-resolved minus pooled LVEF MAE (test, EF points)"]
    assert not frames.met  # its interval crosses zero
    assert all(isinstance(x, (Target, tuple)) for x in real.real_checks(r))
