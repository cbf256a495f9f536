"""The analysis layer: agreement statistics and the long table (07), clustering (08), report and index (09)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from cmrlib import results, runner, stats  # noqa: E402
from cmrlib.analysis import agreement as ag  # noqa: E402
from cmrlib.analysis import clusters as cl  # noqa: E402
from cmrlib.analysis import report  # noqa: E402
from cmrlib.cli import main  # noqa: E402
from cmrlib.labels import LA, LV  # noqa: E402
from cmrlib.measure import MeasureError, valve_hinges, valve_track  # noqa: E402
from cmrlib.methods import cussp, edes, sslhf  # noqa: E402
from cmrlib.plots import save_figure  # noqa: E402


# ---------------------------------------------------------------- statistics

def test_lin_ccc_is_one_on_identity_and_penalises_a_shift():
    x = np.arange(10.0)
    assert stats.lin_ccc(x, x) == pytest.approx(1.0)
    # shift by 1 SD: ccc = 2 s^2 / (2 s^2 + d^2) with population variances
    s2 = x.var()
    assert stats.lin_ccc(x + np.sqrt(s2), x) == pytest.approx(2 * s2 / (2 * s2 + s2))
    assert stats.lin_ccc(x, x) > stats.lin_ccc(2 * x, x)  # a slope is disagreement too, though r = 1


def test_agreement_matches_the_single_statistics():
    rng = np.random.default_rng(0)
    ref = rng.normal(100, 20, 40)
    auto = ref + rng.normal(2, 5, 40)
    a = stats.agreement(auto, ref)
    ba = stats.bland_altman(auto, ref)
    assert a["bias"] == pytest.approx(ba["bias"]) and (a["bias_low"], a["bias_high"]) == pytest.approx(ba["bias_ci"])
    assert a["icc2"] == pytest.approx(stats.icc(auto, ref)["icc"])
    assert a["mae"] == pytest.approx(np.abs(auto - ref).mean())
    assert a["icc2_low"] < a["icc2"] < a["icc2_high"]


# ---------------------------------------------------------------- valve from masks

def two_chambers(angle_deg: float = 0.0, size: int = 96) -> np.ndarray:
    """LV box below an LA box sharing a 30-px border (x 33..62 at y = 48), rotated about the image centre."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    c = (size - 1) / 2
    t = np.deg2rad(angle_deg)
    # rotate the sampling grid back so the drawn chambers turn by +angle
    x = c + (xx - c) * np.cos(t) + (yy - c) * np.sin(t)
    y = c - (xx - c) * np.sin(t) + (yy - c) * np.cos(t)
    lab = np.zeros((size, size), np.uint8)
    inside = (x >= 33) & (x <= 62)
    lab[inside & (y >= 48) & (y < 80)] = LV
    lab[inside & (y >= 25) & (y < 48)] = LA
    return lab


def test_valve_hinges_are_the_ends_of_the_shared_border():
    p = valve_hinges(two_chambers())
    p = p[np.argsort(p[:, 0])]
    assert p[0] == pytest.approx([33, 48], abs=1) and p[1] == pytest.approx([62, 48], abs=1)


@pytest.mark.parametrize("angle", [20.0, -35.0])
def test_valve_hinges_follow_a_tilted_valve(angle):
    p = valve_hinges(two_chambers(angle))
    d = p[1] - p[0]
    tilt = np.rad2deg(np.arctan2(d[1], d[0]))
    tilt = (tilt + 90) % 180 - 90
    assert tilt == pytest.approx(angle, abs=4)
    assert np.hypot(*d) == pytest.approx(29, abs=3)


def test_valve_hinges_need_both_chambers():
    lab = two_chambers()
    lab[lab == LA] = 0
    with pytest.raises(MeasureError, match="no LA"):
        valve_hinges(lab)
    track = valve_track(np.stack([two_chambers(), lab]))
    assert np.isfinite(track[0]).all() and np.isnan(track[1]).all()


def test_mask_mapse_with_no_measurable_cine_keeps_its_columns():
    table, skipped = ag.mask_mapse(None, {})
    assert list(table.columns) == ["subject", "MAPSE", "s_prime", "e_prime", "a_prime"] and table.empty
    assert list(skipped.columns) == ["subject", "view", "error"]


# ---------------------------------------------------------------- the long table

def table1_like() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    ref = rng.normal(150, 30, 6)
    return pd.DataFrame({"subject": [f"s{i}" for i in range(6)], "split": "test", "group": ["HCM", "healthy"] * 3,
                         "LVEDV_auto": ref + 3, "LVEDV_model": ref, "LVEDV_ref": ref + 1,
                         "LVEDVi_auto": ref / 2, "LVEDVi_ref": ref / 2 + 1})


def test_from_table1_prefers_generating_values_then_masks():
    long = ag.from_table1(table1_like(), "phantom", "segmentation", ag.PHANTOM_REFERENCES)
    assert list(long.columns) == ag.LONG_COLUMNS
    kinds = long.groupby("measure")["reference_kind"].first()
    assert kinds["LVEDV"] == "phantom generating values" and kinds["LVEDVi"] == "true masks"
    lv = long[long.measure == "LVEDV"]
    assert (lv["value"] - lv["reference"]).to_numpy() == pytest.approx(3)
    assert set(lv["view"]) == {"SAX"} and set(lv["unit"]) == {"mL"} and set(lv["condition"]) == {"HCM", "healthy"}


def test_summarise_keeps_small_groups_with_a_reason():
    long = ag.from_table1(table1_like(), "phantom", "segmentation", ag.PHANTOM_REFERENCES)
    s = ag.summarise(long).set_index("measure")
    assert s.loc["LVEDV", "bias"] == pytest.approx(3) and s.loc["LVEDV", "n"] == 6
    small = ag.summarise(long[long.subject.isin(["s0", "s1"])])
    assert small["note"].str.startswith("not testable: 2 pair(s), fewer than 3").all() and small["bias"].isna().all()
    cond = ag.by_condition(long)
    assert set(cond["condition"]) == {"HCM", "healthy"} and (cond["n"] == 3).all()


def test_implied_volumes_read_the_curve_at_the_detected_frames():
    curve = [100.0, 90.0, 60.0, 50.0, 70.0, 95.0]
    manifest = pd.DataFrame({"cine_id": ["a_SAX"], "subject": ["a"], "lv_volume_curve_ml": [json.dumps(curve)]})
    preds = pd.DataFrame({"method": ["m"], "cine_id": ["a_SAX"], "view": ["SAX"], "ed": [0], "es": [3],
                          "ed_pred": [5], "es_pred": [3]})
    v = ag.implied_volumes(preds, manifest).set_index("measure")
    assert v.loc["LVEDV", "value"] == 95 and v.loc["LVEDV", "reference"] == 100
    assert v.loc["LVEF", "value"] == pytest.approx(100 * 45 / 95) and v.loc["LVEF", "reference"] == 50
    assert set(v["method"]) == {"ED/ES: m"}


def test_method_vs_method_and_yardstick():
    rng = np.random.default_rng(2)
    ref = rng.normal(12, 3, 20)
    rows = [pd.DataFrame({"cohort": "phantom", "subject": [f"s{i}" for i in range(20)], "measure": "MAPSE",
                          "method": m, "value": ref + rng.normal(0, sd, 20), "reference": ref,
                          "unit": "mm", "reference_kind": "observer 1"})
            for m, sd in (("observer 2", 0.5), ("A", 1.0), ("B", 2.0))]
    long = pd.concat(rows, ignore_index=True)
    mvm = ag.method_vs_method(long, [("MAPSE", "A", "B"), ("MAPSE", "A", "absent")])
    assert len(mvm) == 1 and mvm.loc[0, "n"] == 20
    y = ag.yardstick(ag.summarise(long)).set_index("method")
    assert 1 < y.loc["A", "width_ratio"] < y.loc["B", "width_ratio"]


# ---------------------------------------------------------------- clustering

def subjects_table(n_case=5, n_control=12) -> pd.DataFrame:
    return pd.DataFrame({"subject": [f"s{i:02d}" for i in range(n_case + n_control)],
                         "af": [True] * n_case + [False] * n_control,
                         "healthy": [False] * n_case + [True] * n_control})


def test_balanced_subset_is_equal_and_follows_the_seed():
    a = cl.balanced_subset(subjects_table(), "af", "healthy", seed=3)
    assert a["af"].sum() == 5 and (~a["af"]).sum() == 5
    assert a.equals(cl.balanced_subset(subjects_table(), "af", "healthy", seed=3))
    with pytest.raises(cl.ClusterError, match="fewer than 3"):
        cl.balanced_subset(subjects_table(n_case=2), "af", "healthy", seed=0)


def test_sex_adjustment_removes_the_sex_difference():
    rng = np.random.default_rng(4)
    sex = np.array(["M", "F"] * 20)
    f = pd.DataFrame({"size": np.where(sex == "M", 10.0, 0.0) + rng.normal(0, 1, 40), "other": rng.normal(0, 1, 40)})
    adj = cl.sex_adjust(f, sex)
    assert abs(adj["size"][sex == "M"].mean() - adj["size"][sex == "F"].mean()) < 1e-9
    assert cl.standardise(f)["size"][sex == "M"].mean() > 0.9


def test_clusters_find_three_blobs_and_score_against_the_truth():
    rng = np.random.default_rng(5)
    truth = np.repeat([0, 1, 2], [12, 8, 5])
    x = np.array([[0, 0], [8, 0], [0, 8]])[truth] + rng.normal(0, 0.5, (25, 2))
    k, sil = cl.choose_k(x, [2, 3, 4])
    assert k == 3 and len(sil) == 3
    lab = cl.cluster(x, 3)
    assert np.bincount(lab).tolist() == [12, 8, 5]  # numbered by size
    assert cl.rand_indices(lab, {"truth": truth})["ARI vs truth"] == pytest.approx(1.0)
    test = cl.two_cluster_test(x[:, 0], lab)
    assert test["p"] < 0.01 and test["n0"] == 12 and test["note"] == ""


def test_bsa_adjustment_removes_a_linear_dependence_on_body_size():
    rng = np.random.default_rng(6)
    bsa = rng.uniform(1.5, 2.3, 40)
    f = pd.DataFrame({"volume": 80 * bsa + rng.normal(0, 2, 40), "other": rng.normal(0, 1, 40)})
    adj = cl.adjust(f, bsa)
    assert abs(np.corrcoef(adj["volume"], bsa)[0, 1]) < 1e-9 and np.corrcoef(f["volume"], bsa)[0, 1] > 0.9


def test_the_ari_against_diagnosis_stands_out_of_its_permutation_null_only_when_it_should():
    rng = np.random.default_rng(7)
    truth = np.repeat(["DCM", "HCM", "NOR"], 10)
    found = cl.permutation_ari(np.repeat([0, 1, 2], 10), truth, seed=0, n_perm=199)
    assert found["ARI"] == pytest.approx(1.0) and found["p"] == pytest.approx(1 / 200) and found["null_95"] < 0.2
    chance = cl.permutation_ari(rng.integers(0, 3, 30), truth, seed=0, n_perm=199)
    assert chance["p"] > 0.05
    blobs = np.array([[0, 0], [8, 0], [0, 8]])[np.repeat([0, 1, 2], 10)] + rng.normal(0, 0.5, (30, 2))
    subjects = pd.DataFrame(dict(subject=[f"s{i}" for i in range(30)], group=truth, bsa_m2=rng.uniform(1.5, 2.2, 30)))
    sets = {"HeartMAE": pd.DataFrame(blobs, index=subjects.subject),
            "random": pd.DataFrame(rng.normal(0, 1, (30, 2)), index=subjects.subject),
            "tiny": pd.DataFrame(rng.normal(0, 1, (2, 2)), index=subjects.subject[:2])}
    t = cl.real_diagnoses(sets, subjects, [2, 3, 4], seed=0, n_perm=199)
    assert len(t) == 6 and set(t.adjustment) == {"raw", "BSA-adjusted"}
    heart = t[t.features == "HeartMAE"].set_index("adjustment")
    assert heart.at["raw", "k"] == 3 and heart.at["raw", "p"] < 0.05
    assert t[t.features == "tiny"].note.str.startswith("not testable").all()
    learned = t[~t.features.isin(cl.LEARNED_NOT)].p.dropna()
    assert cl.learned_p(t) == pytest.approx(min(1.0, heart.p.min() * len(learned)))  # Bonferroni over the tested rows
    assert len(cl.real_figure(t).axes) == 1


@pytest.mark.parametrize("sizes", [(7, 1), (8, 0), (1, 1)])
def test_a_rank_test_on_clusters_too_small_is_a_row_that_says_so(sizes):
    """A 7/1 split of 8 subjects (notebook 08 in smoke) is a row that says the test was not possible, and why."""
    labels = np.repeat([0, 1], sizes)
    values = np.arange(len(labels), dtype=float)
    test = cl.two_cluster_test(values, labels)
    assert np.isnan(test["p"]) and np.isnan(test["U"]) and (test["n0"], test["n1"]) == sizes
    assert test["note"] == f"not testable: clusters of {sizes[0]} and {sizes[1]} measured subjects (a rank test needs 2 in each)"
    unmeasured = cl.two_cluster_test([1.0, np.nan, 3.0, 4.0], [0, 0, 1, 1])  # NaN values do not count
    assert unmeasured["n0"] == 1 and unmeasured["note"].startswith("not testable")
    with pytest.raises(cl.ClusterError, match="too few to compare cluster counts"):
        cl.choose_k(np.zeros((2, 3)), [2, 3])


# ---------------------------------------------------------------- report, index, README, run record

def list_headlines(run: Path, number: str, study) -> None:
    """What a Study's last step does with the tables its notebook wrote: its headline tables, listed for the report
    (a stand-in for the Study gives the named pieces they ask for from those tables)."""
    nb = results.Notebook(number, run, run / "figures", 0)
    written = lambda name: pd.read_csv(f) if (f := nb.out / f"{name}.csv").exists() else None  # noqa: E731
    named = dict(  # the named pieces a Study's headline tables ask for, as the tables written stand for them
        paper_tables=lambda: {f"Table {n}": t for n in ("I", "II", "III") if (t := written(f"table_{n}")) is not None},
        row_differences=lambda: None if (d := written("differences")) is None else (d, None),
        table1_result=lambda: written("table1"), table2_result=lambda: written("table2"),
        scored=lambda: written("table2"),
        pool_result=lambda: None if (d := written("pool_curve")) is None else SimpleNamespace(table=d),
        test_results=lambda: None if (d := written("afd_table")) is None else SimpleNamespace(table=d),
        real_results=lambda: None if written("real_afd_table") is None else SimpleNamespace(
            procedure=d if (d := written("real_afd_nested")) is not None else pd.DataFrame()),
        agreement_tables=lambda: None if (d := written("agreement_by_stage")) is None else (None, d))
    stand_in = SimpleNamespace(optional=lambda name: named.get(name, lambda: None)())
    for name, title, table in study.headline_tables(stand_in):
        nb.headline(name, title, table)


def fake_run(tmp_path, commit="abc1234def", also=("04_mr_classification", "05_hf_classification")):
    """A run record of notebook 02 (and `also`, finished) with 02's targets and Table 1."""
    (tmp_path / "02").mkdir(parents=True)
    (tmp_path / "run.json").write_text(json.dumps({
        "profile": "smoke", "git_commit": commit, "started": "2026-01-01T00:00:00+00:00",
        "notebooks": [{"notebook": f"{nb}.ipynb", "status": "ok", "wall_s": 60.0, "git_commit": commit}
                      for nb in ("02_ed_es", *also)]}))
    pd.DataFrame({"figure": ["aFD ED"], "value": [0.3], "goal": ["<="], "target": [0.38], "met": [True]}).to_csv(
        tmp_path / "02" / "targets.csv", index=False)
    pd.DataFrame({"method": ["TempReg-Net", "New"], "view": ["all", "all"], "n": [3, 3], "aFD_ED": [0.3, 0.5],
                  "SD_ED": [0.1, 0.1], "aFD_ES": [0.2, 0.4], "SD_ES": [0.1, 0.1]}).to_csv(
        tmp_path / "02" / "afd_table.csv", index=False)
    list_headlines(tmp_path, "02", edes.Study)
    return tmp_path


def test_report_states_the_run_targets_and_paper_numbers(tmp_path):
    text = report.report(fake_run(tmp_path, also=()))
    assert "Profile `smoke`, commit `abc1234`" in text and "1 of 1 met" in text
    afd = [line for line in text.splitlines() if line.startswith("| TempReg-Net")][0]
    assert "0.38" in afd and "0.44" in afd  # the paper's row beside ours
    assert "| New" in text and "–" in text  # a row the paper lacks shows a dash
    with pytest.raises(report.ReportError, match="no run record"):
        report.report(tmp_path / "02")


def test_the_timing_table_marks_each_notebook_over_its_budget():
    run = {"notebooks": [{"notebook": "04_x.ipynb", "status": "ok", "wall_s": 1803.0, "budget_min": 30},
                         {"notebook": "05_y.ipynb", "status": "ok", "wall_s": 600.0, "budget_min": 30},
                         {"notebook": "06_z.ipynb", "status": "ok", "wall_s": 60.0}]}  # a run from before budgets
    t = report.notebook_table(run)
    assert t.within.tolist() == ["**over**", "yes", ""] and t.minutes.tolist() == [30.05, 10.0, 1.0]
    assert report._of_budget(run) == "" and report._of_budget({"notebooks": run["notebooks"][:2]}) == " (budget 60 min)"
    run["notebooks"][0]["together"] = ["05_y.ipynb"]  # side by side: the pair's larger budget counts once
    run["notebooks"][1].update(together=["04_x.ipynb"], budget_min=20)
    assert report._of_budget({"notebooks": run["notebooks"][:2]}) == " (budget 30 min)"


def test_the_running_page_takes_its_minutes_and_largest_steps_from_the_run(tmp_path):
    run = fake_run(tmp_path)
    rec = json.loads((run / "run.json").read_text())
    when = {"02": ("00:00", 1500, 30, ["05_hf_classification.ipynb"]), "05": ("00:00", 2400, 35, ["02_ed_es.ipynb"]),
            "04": ("00:40", 600, 10, [])}  # 02 beside 05, then 04
    for r in rec["notebooks"]:
        start, wall, budget, together = when[r["notebook"][:2]]
        r.update(started=f"2026-01-01T{start}:00+00:00", wall_s=wall, budget_min=budget, together=together)
    (run / "run.json").write_text(json.dumps(rec))
    pd.DataFrame({"step": ["pretraining", "a plot"], "seconds": [400.0, 20.0]}).to_csv(run / "02" / "timings.csv",
                                                                                        index=False)
    text = re.sub(" +", " ", report.timing(run))
    assert "commit `abc1234`: 50.0 min by the clock (budget 45 min), 75.0 min summed over the notebooks" in text
    assert "| 02 and 05 side by side | 25.0 and 40.0 | 30 and 35 | `abc1234` |" in text
    assert "| 04 | 10.0 | 10 | `abc1234` |" in text and "Over budget: 05 (40.0 against 35)." in text
    assert "| 02 | pretraining | 6.7 |" in text and "a plot" not in text
    page = tmp_path / "running.md"
    start, end = report.TIMING_MARKERS
    page.write_text(f"# Run time\n\n{start}\n50 minutes, typed\n{end}\n")
    assert report.drift(run, page)
    report.fill(run, page)
    assert "| 04 | 10.0 |" in re.sub(" +", " ", page.read_text()) and report.drift(run, page) == []


def test_the_report_says_when_bf16_notebooks_trained_in_float32(tmp_path):
    run_dir = fake_run(tmp_path)
    rec = json.loads((run_dir / "run.json").read_text())
    rec["notebooks"][0]["parameters"] = {"bf16": True}
    for native, shown in ((True, False), (None, False), (False, True)):  # None: a record from before the field
        (run_dir / "run.json").write_text(json.dumps(dict(rec, **({} if native is None else {"cpu_bf16": native}))))
        text = report.report(run_dir)
        assert ("notebooks 02 (`bf16: true`) train in float32" in text) is shown
    rec["notebooks"][0]["parameters"] = {"bf16": False}
    (run_dir / "run.json").write_text(json.dumps(dict(rec, cpu_bf16=False)))
    assert "float32" not in report.report(run_dir)


@pytest.mark.parametrize("listed", [{"../../secret.csv": "x"}, {"/etc/passwd": "x"}, {"a.csv": 3}, ["a.csv"]])
def test_a_headline_list_names_only_tables_of_its_own_folder(tmp_path, listed):
    run = fake_run(tmp_path)
    (run / "02" / "headlines.json").write_text(json.dumps(listed))
    with pytest.raises(report.ReportError, match="headline list|not a table of this notebook's folder"):
        report.report(run)


def test_the_report_shows_the_tables_a_notebook_lists_in_its_order_and_knows_no_method(tmp_path):
    run = fake_run(tmp_path)
    nb = results.Notebook("06", run, run / "figures", 0)
    nb.headline("second", "listed second", pd.DataFrame({"x": [2]}))
    nb.headline("first", "listed first", pd.DataFrame({"x": [1]}))
    nb.headline("second", "listed second, written again", pd.DataFrame({"x": [3]}))
    titles = [t for t, _ in report.headlines(run)]
    assert titles[-2:] == ["06 · listed second, written again", "06 · listed first"] and titles[0].startswith("02 · ")


def test_figure_index_lists_captions(tmp_path):
    run = fake_run(tmp_path)
    figs = tmp_path / "figs"
    fig, _ = plt.subplots()
    save_figure(fig, figs, "02_afd")
    (run / "02" / "figures.json").write_text(json.dumps({"02_afd": {"caption": "aFD bars", "notebook": "02"}}))
    index = report.figure_index(run, figs)
    line = [x for x in index.splitlines() if "[02_afd.png]" in x][0]
    assert "aFD bars" in line and "abc1234" in line


def test_a_paper_style_copy_takes_its_notebook_figures_caption_or_is_shown_uncaptioned(tmp_path):
    run = fake_run(tmp_path)
    figs = tmp_path / "figs"
    for folder, name in ((figs, "02_afd"), (figs / "paper", "02_afd"), (figs / "paper", "08_rand_indices")):
        fig, _ = plt.subplots()
        save_figure(fig, folder, name)
    (run / "02" / "figures.json").write_text(json.dumps({"02_afd": {"caption": "aFD bars", "notebook": "02"}}))
    lines = report.figure_index(run, figs).splitlines()
    assert "paper style (PNG + PDF) of aFD bars" in [x for x in lines if "paper/02_afd.png" in x][0]
    assert "(no caption recorded)" in [x for x in lines if "paper/08_rand_indices.png" in x][0]


def test_an_ari_table_of_notes_only_draws_no_paper_copy(tmp_path):
    """08 draws no ARI figure when it could cluster nothing, so 09 draws no uncaptioned paper copy of it."""
    from cmrlib.analysis.clustering_study import Clustering

    (tmp_path / "08").mkdir()
    cols = ["features", "adjustment", "k", "silhouette", "ARI vs disease", "ARI vs sex", "note"]
    notes = pd.DataFrame([dict(features="HeartMAE", adjustment="raw", note="not testable: 3 subjects")], columns=cols)
    notes.to_csv(tmp_path / "08" / "rand_indices.csv", index=False)
    assert list(Clustering.paper_figures(tmp_path)) == []
    done = notes.assign(k=2, silhouette=0.4, **{"ARI vs disease": 0.5, "ARI vs sex": 0.0}, note="")
    done.to_csv(tmp_path / "08" / "rand_indices.csv", index=False)
    assert [name for name, _ in Clustering.paper_figures(tmp_path)] == ["08_rand_indices"]
    plt.close("all")


def _glanced(tmp_path):
    """fake_run with 02's results row and a second, interval-bearing target."""
    run = fake_run(tmp_path, also=())
    pd.DataFrame({"figure": ["TempReg-Net aFD ED (frames)",
                             "real SAX patients (9, out of fold): fine-tuned TempReg-Net aFD ES (frames)"],
                  "value": [0.3, 1.25], "low": [None, 0.5], "high": [None, 2.0], "goal": ["<=", "<="],
                  "target": [0.38, 1.0], "met": [True, False]}).to_csv(run / "02" / "targets.csv", index=False)
    (run / "02" / "glance.json").write_text(json.dumps(dict(edes.Study.GLANCE, notebook="02")))
    return run


def test_the_readme_results_table_is_the_runs_targets_and_a_check_names_every_number_that_drifts(tmp_path, capsys):
    run = _glanced(tmp_path / "run")
    t = report.glance_table(run)
    row = t.set_index("method").loc["TempReg-Net (02)"]
    assert row["paper"] == "0.38 / 0.44" and row["phantom"] == "ED 0.3"
    assert row["real patients"] == "fine-tuned TempReg-Net ES, out of fold 1.25 [0.5, 2]"
    assert row["target met"] == "phantom yes, real no"
    readme = tmp_path / "README.md"
    start, end = report.GLANCE_MARKERS
    readme.write_text(f"# title\n\n{start}\ntyped by hand\n{end}\n\n## after\n")
    assert main(["report", str(run), "--check", str(readme)]) == 1
    assert "README.md line 4: 'typed by hand' -> " in capsys.readouterr().out
    assert main(["report", str(run), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "commit `abc1234`" in text and "| TempReg-Net (02) |" in text and text.endswith("## after\n")
    capsys.readouterr()
    assert main(["report", str(run), "--check", str(readme)]) == 0
    readme.write_text(text.replace("1.25 [0.5, 2]", "1.20 [0.5, 2]"))
    assert main(["report", str(run), "--check", str(readme)]) == 1
    out = capsys.readouterr().out
    assert "README.md line " in out and ": 1.20 -> 1.25" in out and "1 line(s) differ from run run" in out
    for number in re.findall(r"\d+\.\d+", report.glance_table(run)[["phantom", "real patients"]].to_string()):
        assert float(number) in {0.3, 1.25, 0.5}  # every number the table shows is one of the run's targets


def test_a_page_number_no_table_of_its_notebook_holds_is_named(tmp_path, capsys):
    run = fake_run(tmp_path / "run", also=())  # 02's afd_table: aFD_ED 0.3, 0.5; SD 0.1; aFD_ES 0.2, 0.4
    page = tmp_path / "02_ed_es.md"
    page.write_text("TempReg-Net's aFD ED is 0.30 (SD 0.1) and ES 0.2.\nThe new row reads 0.45 against 0.4.\n"
                    "At 1a2b3c4 it read 0.77 (another run).\n| New | 0.50 | -0.4 |\n")
    assert report.untraced(run, page) == ["02_ed_es.md line 2: 0.45"]
    assert main(["report", str(run), "--trace", str(page)]) == 1
    assert "1 line(s) hold a number" in capsys.readouterr().out
    page.write_text("0.3 and 0.40\n")
    assert main(["report", str(run), "--trace", str(page)]) == 0
    with pytest.raises(report.ReportError, match="no notebook '05' folder"):
        report.untraced(run, tmp_path / "05_hf.md")


def test_a_run_table_block_on_a_page_is_the_runs_table_and_its_drift_is_named(tmp_path, capsys):
    run = fake_run(tmp_path / "run", also=())
    page = tmp_path / "02_ed_es.md"
    page.write_text("# 02\n\nTable 1 of the run:\n\n<!-- run-table 02/afd_table.csv cols=method|aFD_ED -->\n"
                    "| method | aFD_ED |\n| TempReg-Net | 0.25 |\n<!-- /run-table -->\n\nIt reads 0.3 (typed).\n")
    assert main(["report", str(run), "--check", str(page)]) == 1  # the typed copy is not the run's
    assert main(["report", str(run), "--readme", str(page)]) == 0
    text = page.read_text()
    rows = [re.sub(" +", " ", x) for x in text.splitlines() if x.startswith("| ")]
    assert rows[1:] == ["| TempReg-Net | 0.3 |", "| New | 0.5 |"] and "aFD_ES" not in text
    assert text.endswith("It reads 0.3 (typed).\n") and report.drift(run, page) == []
    assert report.untraced(run, page) == []  # the block is the run's; the prose's 0.3 is in its tables
    page.write_text("<!-- run-table 02/afd_table.csv cols=method|aFD_ES where=method:New|Old* -->\n"
                    "<!-- /run-table -->\n")
    rows = [re.sub(" +", " ", x) for x in report.filled(run, page).splitlines() if x.startswith("| ")]
    assert rows == ["| method | aFD_ES |", "| New | 0.4 |"]  # the rows `where` keeps
    for block, error in (("02/afd_table.csv cols=method|nope", "no column 'nope'"),
                         ("02/afd_table.csv where=nope:x", "no column 'nope'"),
                         ("../secret.csv", "not a notebook folder's table")):
        page.write_text(f"<!-- run-table {block} -->\n<!-- /run-table -->\n")
        with pytest.raises(report.ReportError, match=error):
            report.filled(run, page)


def test_a_results_row_of_the_wrong_shape_is_one_line(tmp_path):
    run = _glanced(tmp_path)
    (run / "02" / "glance.json").write_text(json.dumps(dict(method="x", headline="y", paper="z", real=[["a"]])))
    with pytest.raises(report.ReportError, match="02/glance.json: not a results row"):
        report.glance_table(run)


def test_splice_readme_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    start, end = report.MARKERS
    readme.write_text(f"# title\n\n{start}\nold numbers\n{end}\n\n## after\n")
    report.splice_readme(readme, "new numbers\n")
    s = readme.read_text()
    assert "new numbers" in s and "old numbers" not in s and s.startswith("# title") and s.endswith("## after\n")
    (tmp_path / "plain.md").write_text("# no markers\n")
    with pytest.raises(report.ReportError, match="needs each results marker once"):
        report.splice_readme(tmp_path / "plain.md", "x")


def test_vector_copies_are_written_and_repeatable(tmp_path):
    for d in ("a", "b"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        save_figure(fig, tmp_path / d, "f", vector="pdf")
    assert (tmp_path / "a" / "f.png").exists()
    assert (tmp_path / "a" / "f.pdf").read_bytes() == (tmp_path / "b" / "f.pdf").read_bytes()
    with pytest.raises(ValueError, match="vector"):
        save_figure(plt.subplots()[0], tmp_path, "g", vector="eps")


def test_a_partial_run_keeps_the_earlier_notebooks_in_run_json(tmp_path):
    p = runner.plan("smoke", only=["09"], out=tmp_path)
    old = {"notebook": "00_cohort.ipynb", "status": "ok", "wall_s": 1.0}
    (tmp_path / "run.json").write_text(json.dumps({"profile": "smoke", "notebooks": [
        old, {"notebook": "09_figures.ipynb", "status": "failed"}]}))
    assert runner.earlier_notebooks(p) == [old]  # 09 is re-run, so its old row goes
    (tmp_path / "run.json").write_text(json.dumps({"profile": "default", "notebooks": [old]}))
    assert runner.earlier_notebooks(p) == []  # another profile's run is not this one's history
    with pytest.raises(runner.RunError, match="no run record"):
        runner.rerun(tmp_path / "nothing", ["09"])


def test_a_run_finishing_after_another_keeps_the_others_notebooks_in_run_json(tmp_path):
    """Two `--only` runs into one folder: the later writer re-reads run.json, so the one that finished meanwhile
    keeps its row."""
    p = runner.plan("smoke", only=["09"], out=tmp_path)
    runner._record(p, [{"notebook": "09_figures.ipynb", "status": "running"}], 0.0, "running", "a")
    other = {"notebook": "00_cohort.ipynb", "status": "ok", "git_commit": "b"}  # written by the other run meanwhile
    rec = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps(dict(rec, notebooks=rec["notebooks"] + [other])))
    runner._record(p, [{"notebook": "09_figures.ipynb", "status": "ok"}], 0.0, "ok", "a")
    rows = json.loads((tmp_path / "run.json").read_text())["notebooks"]
    assert [(r["notebook"], r["status"]) for r in rows] == [("00_cohort.ipynb", "ok"), ("09_figures.ipynb", "ok")]


def test_report_carries_cussp_table2_beside_the_paper(tmp_path):
    run = fake_run(tmp_path)
    (run / "04").mkdir()
    pd.DataFrame({"row": ["CUSSP-SIAM-25"], "F1": ["0.70 (0.40-0.90)"], "AUC": ["0.90 (0.80-0.97)"],
                  "paper F1": [0.69], "paper AUC": [0.88]}).to_csv(run / "04" / "table2.csv", index=False)
    list_headlines(run, "04", cussp.Study)
    text = report.report(run)
    line = [x for x in text.splitlines() if x.startswith("| CUSSP-SIAM-25")][0]
    assert "0.70 (0.40-0.90)" in line and "0.69" in line and "0.88" in line


def test_report_carries_sslhf_tables_and_differences(tmp_path):
    run = fake_run(tmp_path)
    (run / "05").mkdir()
    pd.DataFrame({"row": ["SSLHF"], "patient AUC": ["0.860 (0.800-0.920)"], "patient AUC (paper)": [0.8505]}).to_csv(
        run / "05" / "table_I.csv", index=False)
    pd.DataFrame({"row": ["A: no proxy"], "difference": [0.031], "ci_low": [-0.01], "ci_high": [0.07]}).to_csv(
        run / "05" / "differences.csv", index=False)
    list_headlines(run, "05", sslhf.Study)
    text = report.report(run)
    assert "SSLHF Table I" in text and "0.860 (0.800-0.920)" in text and "0.8505" in text
    assert [x for x in text.splitlines() if x.startswith("| A: no proxy")]


def test_pseudo_point_error_pairs_the_unordered_reference_points_and_uses_mm():
    from cmrlib.measure import fill_gaps
    from cmrlib.methods.mvnet.evaluate import pseudo_point_error

    labels = np.stack([two_chambers() for _ in range(6)])
    labels[2] = 0  # a frame without a valve: interpolated from its neighbours
    ref = fill_gaps(valve_track(labels))
    assert np.isfinite(ref).all() and ref[2] == pytest.approx(ref[1])
    pred = ref[:, ::-1] + np.array([3.0, 0.0])  # the other point order, 3 px to the right
    assert pseudo_point_error(pred, ref, (2.0, 1.5)) == pytest.approx(4.5)  # 3 px x 1.5 mm


def test_report_escapes_every_cell_and_refuses_a_marker(tmp_path):
    run = fake_run(tmp_path)
    table = run / "02" / "headline_afd.csv"
    df = pd.read_csv(table)
    df.loc[1, "method"] = "<script>alert(1)</script> a|b\nnext <img src=x onerror=alert(1)>"
    df.to_csv(table, index=False)
    text = report.report(run)
    row = [line for line in text.splitlines() if "alert" in line]
    assert len(row) == 1 and "<script>" not in text and "<img" not in text
    assert "&lt;script&gt;" in row[0] and "a\\|b next" in row[0]
    assert row[0].count(" | ") == text.splitlines()[text.splitlines().index(row[0]) - 1].count(" | ")
    df.loc[1, "method"] = report.MARKERS[1]
    df.to_csv(table, index=False)
    with pytest.raises(report.ReportError, match="holds a results marker"):
        report.report(run)
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.MARKERS[0]}\nold\n{report.MARKERS[1]}\n{report.MARKERS[1]}\n")
    with pytest.raises(report.ReportError, match="needs each results marker once"):
        report.splice_readme(readme, "new\n")


@pytest.mark.parametrize("damage", ["run.json", "02/targets.csv"])
def test_a_damaged_run_file_is_one_line_naming_it(tmp_path, damage, capsys):
    from cmrlib.cli import main

    run = fake_run(tmp_path)
    (run / damage).write_bytes(b"\x00\xff{not json or csv\n\"unterminated")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and damage.split("/")[-1] in err and "Traceback" not in err
