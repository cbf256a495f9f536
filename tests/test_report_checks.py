"""A patient report sorts every number into one tier, never summed: not measurable (the cines cannot give it),
withheld (human bounds, consistency rules, implausible spacing), uncertain (a calibrated interval across a clinical
cut-off), and apart from these abnormal (the normal range for the patient's sex); only methods with a real-data
check reach the main table; a cohort folder gives one report per subject, resumably, and never merges two
subjects' cines."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cmrlib import plausible
from cmrlib.analyse import (AnalyseError, _interval, analyse, calibration, interval_spread, read_patient,
                            with_intervals)
from cmrlib.analyse_batch import analyse_cohort, is_cohort
from cmrlib.cli import main
from cmrlib.io.qa import acquisition_flags
from cmrlib.methods import segmentation
from cmrlib.models import unet11
from cmrlib.phantom import simulate_subject
from cmrlib.predictor import provenance_problem

SMALL = dict(n_frames=10, matrix=64, pixel_mm=3.0)


def table(rows, method="segmentation", cine="patient_SAX") -> pd.DataFrame:
    """A report's measures from (measure, value, unit) rows."""
    return pd.DataFrame([dict(method=method, model="m", measure=m, value=v, unit=u, cine=cine) for m, v, u in rows])


def flags(tab: pd.DataFrame) -> dict[str, str]:
    return dict(zip(tab.measure, tab.flag))


IMPOSSIBLE = [("LVEDV", 1583.0, "mL"), ("LVESV", 1550.0, "mL"), ("LVSV", 33.0, "mL"), ("LVEF", 2.1, "%"),
              ("RVEDV", 0.2, "mL"), ("RVESV", 0.32, "mL"), ("RVSV", -0.12, "mL"), ("RVEF", -62.5, "%"),
              ("LVM", 0.026, "g")]
HEALTHY = [("LVEDV", 150.0, "mL"), ("LVESV", 60.0, "mL"), ("LVSV", 90.0, "mL"), ("LVEF", 60.0, "%"),
           ("RVEDV", 160.0, "mL"), ("RVESV", 75.0, "mL"), ("RVSV", 85.0, "mL"), ("RVEF", 53.1, "%"),
           ("LVM", 110.0, "g")]


def test_every_impossible_number_is_withheld_with_the_rule_it_breaks():
    got, _ = plausible.check(table(IMPOSSIBLE), {"SAX"})
    f = flags(got)
    assert all(f.values()) and set(got.tier) == {"withheld"}, f
    assert plausible.SV_GAP not in set(got.measure)  # no gap from stroke volumes no heart has
    assert "outside human range" in f["LVEDV"] and "outside human range" in f["RVEF"]
    assert "breaks RVEDV >= RVESV" in f["RVESV"] and "outside human range" in f["LVM"]
    lax, _ = plausible.check(table([("MAPSE", 0.06, "mm"), ("e_prime", 0.02, "cm/s")], "mvnet", "2CH+4CH"),
                             {"2CH", "4CH"})
    assert all("outside human range" in v for v in flags(lax).values())


def test_a_healthy_consistent_heart_is_not_flagged_and_sits_in_its_normal_range():
    got, hidden = plausible.check(table(HEALTHY), {"SAX"}, sex="male", bsa=2.0)
    assert not any(got.flag) and not any(got.tier) and hidden.empty
    assert plausible.tier_counts(got) == dict(withheld=0, uncertain=0, abnormal=0, not_measurable=0)
    ef = got.set_index("measure").loc["LVEF"]
    assert ef.vs_normal == "within" and ef.normal == "48-68" and ef.z == pytest.approx(0.4)
    lvmi = got.set_index("measure").loc["LVMi"]  # indexed from BSA where a normal range exists
    assert lvmi.value == pytest.approx(55.0) and lvmi.unit == "g/m²" and lvmi.vs_normal == "within"
    female, _ = plausible.check(table([("LVEF", 45.0, "%")]), {"SAX"}, sex="female")
    assert female.vs_normal[0] == "below" and female.z[0] == pytest.approx(-3.2)
    nosex, _ = plausible.check(table([("LVEF", 45.0, "%"), ("LVEDV", 170.0, "mL")]), {"SAX"})
    ef, edv = nosex.set_index("measure").loc["LVEF"], nosex.set_index("measure").loc["LVEDV"]
    assert ef.normal == "women 51-71, men 48-68" and ef.vs_normal == "below" and ef.grade == "mildly reduced"
    assert edv.vs_normal == "above for a woman, normal for a man" and np.isnan(edv.z)  # no z without the sex


def test_without_the_sex_a_failing_heart_is_abnormal_and_its_lvef_graded():
    """ACDC patient001's numbers (dilated cardiomyopathy), no sex given: outside every sex's range is abnormal."""
    rows = [("LVEDV", 257.0, "mL"), ("LVESV", 197.0, "mL"), ("LVSV", 60.0, "mL"), ("LVEF", 23.3, "%"),
            ("RVEDV", 150.0, "mL"), ("RVESV", 117.0, "mL"), ("RVSV", 33.0, "mL"), ("RVEF", 22.0, "%")]
    got = plausible.check(table(rows), {"SAX"})[0].set_index("measure")
    assert got.loc["LVEF", "vs_normal"] == "below" and got.loc["LVEF", "grade"] == "reduced"
    assert got.loc["LVEDV", "vs_normal"] == "above" and got.loc["LVESV", "vs_normal"] == "above"
    assert got.loc["RVEF", "grade"] == "reduced" and got.loc["RVEF", "vs_normal"] == ""  # a grade, no range held
    assert plausible.tier_counts(got.reset_index())["abnormal"] == 4  # LVEDV, LVESV, LVEF, RVEF
    between = plausible.check(table([("LVEF", 50.0, "%")]), {"SAX"})[0].iloc[0]
    assert between.vs_normal == "below for a woman, normal for a man" and between.grade == "normal"
    assert plausible.tier_counts(pd.DataFrame([between]))["abnormal"] == 0  # normal for one sex: not abnormal
    assert [plausible.grade("LVEF", v) for v in (40.0, 40.5, 49.9, 50.0)] == \
        ["reduced", "mildly reduced", "mildly reduced", "normal"]
    assert [plausible.grade("RVEF", v) for v in (40.0, 45.0, 45.1)] == ["reduced", "mildly reduced", "normal"]
    assert set(plausible.sources_of(["LVEF", "RVEF", "LVEDV", "MAPSE"])) == {"LVEF", "RVEF", "LVEDV"}


def test_an_interval_too_wide_to_mean_anything_makes_the_number_uncertain():
    tab = table([("RVEF", 22.1, "%"), ("LVEF", 60.0, "%"), ("LVEDV", 150.0, "mL"), ("LVESV", 60.0, "mL")])
    got = plausible.check(tab.assign(low=[5.0, 52.0, 100.0, 50.0], high=[41.0, 68.0, 200.0, 70.0]), {"SAX"})[0]
    f, tiers = flags(got), dict(zip(got.measure, got.tier))
    assert tiers == dict(RVEF="uncertain", LVEF="", LVEDV="uncertain", LVESV="")
    assert "wider than ±10 points" in f["RVEF"] and "wider than ±25%" in f["LVEDV"]
    rv = table([("RVEF", 30.3, "%"), ("LVEF", 24.8, "%")]).assign(low=[11.7, 16.2], high=[48.8, 33.5])
    got = plausible.check(rv, {"SAX"})[0].set_index("measure")  # patient001: an RVEF that may be normal
    assert got.loc["RVEF", "grade"] == "reduced" and not got.loc["RVEF", "abnormal"]  # ... is not counted abnormal
    assert got.loc["LVEF", "abnormal"] and plausible.tier_counts(got.reset_index())["abnormal"] == 1


def test_frames_whose_systole_makes_no_sense_are_withheld_with_what_was_read_at_them():
    """The UK Biobank demo's 4CH read ED at frame 47 and ES at 38 of 50: 82 % of the cycle in systole."""
    tab = pd.concat([table([("ED (4CH)", 47, "frame"), ("ES (4CH)", 38, "frame"), ("LVEDV", 150.0, "mL")],
                           cine="patient_4CH"),
                     table([("ED (SAX)", 0, "frame"), ("ES (SAX)", 16, "frame"), ("LVEF", 60.0, "%")]),
                     table([("ED (2CH)", 0, "frame"), ("ES (2CH)", 25, "frame")], cine="patient_2CH")])
    got = plausible.check(tab, {"SAX", "2CH", "4CH"}, {"SAX": 50, "2CH": 50, "4CH": 50})[0]
    f = dict(zip(got.measure + " " + got.cine, got.flag))
    assert "spans 82 % of the 50-frame cycle" in f["ED (4CH) patient_4CH"] and "read at withheld" in \
        f["LVEDV patient_4CH"]
    assert "lie 18 % of the cycle apart" in f["ES (2CH) patient_2CH"] and "18 %" in f["ES (SAX) patient_SAX"]
    assert "read at withheld ED/ES frames (SAX)" in f["LVEF patient_SAX"]
    assert not f["ED (SAX) patient_SAX"] and not f["ED (2CH) patient_2CH"]  # the 4CH's own frames are not compared
    two = plausible.check(table([("ED (SAX)", 0, "frame"), ("ES (SAX)", 1, "frame")]), {"SAX"}, {"SAX": 2})[0]
    assert not any(two.flag)  # two annotated frames are no cycle


def test_consistency_rules_catch_numbers_that_do_not_add_up_and_the_sv_gap_is_a_measure():
    rows = [r if r[0] != "LVSV" else ("LVSV", 70.0, "mL") for r in HEALTHY]  # EDV - ESV = 90, not 70
    got = plausible.check(table(rows), {"SAX"})[0]
    f = flags(got)
    assert "breaks LVEDV - LVESV = LVSV" in f["LVSV"] and "breaks LVEF = LVSV / LVEDV" in f["LVEF"]
    assert got.set_index("measure").loc["LVEF", "tier"] == "withheld"
    unequal = [r if r[0] not in ("RVESV", "RVSV", "RVEF") else {"RVESV": ("RVESV", 110.0, "mL"),
               "RVSV": ("RVSV", 50.0, "mL"), "RVEF": ("RVEF", 31.25, "%")}[r[0]] for r in HEALTHY]
    gap = plausible.check(table(unequal), {"SAX"})[0].set_index("measure")
    assert gap.loc[plausible.SV_GAP, "value"] == pytest.approx(40.0) and not any(gap.flag)  # a measure, not a flag
    atria = plausible.check(table([("LAVmax", 40.0, "mL"), ("LAVmin", 60.0, "mL")], cine="patient_4CH"), {"4CH"})[0]
    assert "breaks LAVmax >= LAVmin" in flags(atria)["LAVmax"]


def test_an_es_cavity_outgrowing_its_ed_extent_withholds_every_lv_number_read_at_es():
    """A segmentation whose LV at ES reaches beyond its ED area on some slices (ACDC's HCM patient whose LVEF of 77 %
    reads 31 %) has failed at ES: its ES volume, stroke volume and EF are withheld, its EDV and mass are not."""
    grown = 0.1 * 60.0  # mL beyond ED, 10 % of the healthy LVESV
    got = plausible.check(table(HEALTHY), {"SAX"}, bsa=2.0, es_overshoot={"segmentation": grown})[0]
    withheld = set(got.measure[got.tier == "withheld"])
    assert withheld == {m for m in got.measure if plausible.reads_es(m)} >= {"LVESV", "LVSV", "LVEF"}, withheld
    assert {"LVEDV", "LVM", "LVMi", "RVEF"} <= set(got.measure[got.tier == ""])
    assert "outgrows its ED extent on some slices by 6.0 mL (10.0% of LVESV" in flags(got)["LVEF"]
    within = plausible.check(table(HEALTHY), {"SAX"}, es_overshoot={"segmentation": 0.05 * 60.0})[0]
    other = plausible.check(table(HEALTHY), {"SAX"}, es_overshoot={"another method": grown})[0]
    assert not any(within.tier) and not any(other.tier)  # 5 % is within the rule; another method's cavity


def test_an_interval_across_a_clinical_cutoff_is_uncertain_and_abnormal_stands_apart():
    tab = table([("LVEF", 38.0, "%"), ("LVEDV", 150.0, "mL")]).assign(low=[30.0, 130.0], high=[46.0, 170.0])
    got = plausible.check(tab, {"SAX"}, sex="male")[0].set_index("measure")
    assert got.loc["LVEF", "tier"] == "uncertain" and "crosses the 35, 40" in got.loc["LVEF", "flag"]
    assert got.loc["LVEDV", "tier"] == "" and got.loc["LVEF", "vs_normal"] == "below"
    counts = plausible.tier_counts(got.reset_index())
    assert counts == dict(withheld=0, uncertain=1, abnormal=1, not_measurable=0)
    sure = plausible.check(table([("LVEF", 60.0, "%")]).assign(low=[52.0], high=[68.0]), {"SAX"})[0]
    assert sure.tier[0] == ""
    mass = plausible.check(table([("LVM", 110.0, "g")]).assign(low=[90.0], high=[130.0]), {"SAX"}, bsa=2.0)[0]
    assert mass.set_index("measure").loc["LVMi", ["low", "high"]].tolist() == [45.0, 65.0]  # indexed with its value


def test_a_measure_these_views_cannot_show_is_withheld_and_a_missing_one_says_so():
    mae = table([("LVEF", 55.0, "%"), ("LAVmax", 60.0, "mL"), ("MAPSE", 12.0, "mm"), ("TAPSE", 20.0, "mm")],
                "heartmae", "SAX")
    shown, hidden = plausible.check(mae, {"SAX"})
    assert list(shown.measure) == ["LVEF"] and set(hidden.measure) == {"LAVmax", "MAPSE", "TAPSE"}
    nan = plausible.check(table([("LAVmax", float("nan"), "mL")], cine="patient_4CH"), {"4CH"})[0]
    assert flags(nan)["LAVmax"] == "could not be measured from these cines"


def test_a_frame_outside_its_cine_is_withheld_and_one_from_two_frames_is_not_measurable():
    tab = pd.concat([table([("ED (SAX)", 0, "frame")]), table([("ED (SAX)", 10, "frame")], "edes")])
    got = plausible.check(tab, {"SAX"}, {"SAX": 30})[0]
    assert not any(got.tier)  # two methods' frames are each checked on their own, never against each other
    assert flags(plausible.check(table([("ED (SAX)", 31, "frame")]), {"SAX"}, {"SAX": 30})[0])["ED (SAX)"] \
        == "frame 31 is outside the cine's 30 frames"
    two = plausible.check(table([("ES (SAX)", 1, "frame"), ("LVEF", 60.0, "%")]), {"SAX"}, {"SAX": 2},
                          input_flags={"SAX": dict(frames="2 frames: fewer than the 10 a cardiac cycle needs")})[0]
    assert list(two.tier) == ["not measurable", ""]


def test_implausible_acquisition_metadata_is_flagged_by_what_it_spoils():
    ok = acquisition_flags("2CH", 50, 18.0, (1.8, 1.8), None, 1)
    assert ok == dict(frames=[], timing=[], space=[])
    slow = acquisition_flags("2CH", 50, 1000.0, (1.0, 1.0), None, 1)
    assert "frame interval 1000 ms" in slow["timing"][0] and "1.0 mm" in slow["space"][0]
    thin = acquisition_flags("SAX", 4, 30.0, (1.5, 1.5), 30.0, 3)
    assert thin["frames"] and "cycle 120 ms" in thin["timing"][0] and len(thin["space"]) == 2
    tab = table([("e_prime", 9.0, "cm/s"), ("LVEF", 60.0, "%"), ("ED (2CH)", 3, "frame")], "mvnet", "2CH")
    got = plausible.check(tab, {"2CH"}, {"2CH": 50}, input_flags={"2CH": dict(timing="frame interval 1000 ms")})[0]
    assert "2CH cine: frame interval 1000 ms" in flags(got)["e_prime"] and not flags(got)["LVEF"]
    assert got.set_index("measure").loc["e_prime", "tier"] == "not measurable"  # no velocity without frame times
    assert not flags(got)["ED (2CH)"]  # frame numbers stand without frame times


# ---------------------------------------------------------------- the report and the cohort


@pytest.fixture(scope="module")
def subject():
    return simulate_subject(1, seed=0, config=SMALL, views=("SAX", "2CH", "4CH"))


def nifti_patient(folder: Path, subject: dict, frame_ms: float | None = None, prefix: str = "") -> Path:
    """A patient folder of NIfTI long-axis cines named as UK Biobank names them."""
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    for view, name in (("2CH", "la_2ch"), ("4CH", "la_4ch")):
        c = subject[view]
        arr = np.transpose(c.pixels, (2, 1, 0))[:, :, None, :]
        img = nib.Nifti1Image(arr.astype(np.float32), np.diag([c.spacing[1], c.spacing[0], 6.0, 1.0]))
        img.header.set_xyzt_units("mm", "msec")
        img.header["pixdim"][4] = frame_ms or float(np.diff(c.frame_times).mean())
        nib.save(img, folder / f"{prefix}{name}.nii.gz")
    return folder


def test_a_broken_models_report_is_a_research_output_outside_every_count(tmp_path, subject, broken_run):
    patient = nifti_patient(tmp_path / "SMITH^JOHN", subject, frame_ms=1000.0)
    files = analyse(patient, broken_run, tmp_path / "report", log=lambda *_: None, sex="female")
    page, rep = files["html"].read_text(), json.loads(files["json"].read_text())
    tab = pd.read_csv(files["csv"], dtype=dict(flag=str, tier=str)).fillna(dict(flag="", tier=""))
    assert "Smoke profile" in rep["methods"][0]["warnings"][0] and rep["profile"] == "smoke"
    assert rep["research"] == ["segmentation"] and rep["numbers"] == 0 and rep["withheld"] == 0
    assert "0 withheld, 0 uncertain, 0 abnormal" in page and "<details class='research'" in page
    bad = tab[[plausible.bounds(m, u) is not None and np.isfinite(v) and not
               plausible.bounds(m, u)[0] <= v <= plausible.bounds(m, u)[1]
               for m, v, u in zip(tab.measure, tab.value, tab.unit)]]
    assert (bad.tier == "withheld").all()  # no number outside human bounds goes unmarked, counted or not
    assert all("frame interval 1000 ms" in q["timing_flags"] for q in rep["input"]) and "SMITH" not in page and "female" not in page


def test_a_folder_of_two_patients_is_refused_naming_the_files(tmp_path, subject):
    folder = nifti_patient(tmp_path / "mixed", subject, prefix="a_")
    nifti_patient(folder, subject, prefix="b_")
    with pytest.raises(AnalyseError, match=r"two (2|4)CH cines \(a_la_.ch.nii.gz, b_la_.ch.nii.gz\)"):
        read_patient(folder)


def test_nifti_cines_a_cohort_would_read_as_two_subjects_are_refused(tmp_path, subject):
    folder = nifti_patient(tmp_path / "split", subject)
    (folder / "B").mkdir()
    (folder / "la_4ch.nii.gz").rename(folder / "B" / "la_4ch.nii.gz")  # another person's 4CH in a folder of its own
    with pytest.raises(AnalyseError, match="split: cines in 2 folders .each folder of a cohort is one subject.: give"):
        read_patient(folder)
    (folder / "B" / "la_4ch.nii.gz").rename(folder / "la_4ch.nii.gz")
    for name, who in (("la_2ch", "S1"), ("la_4ch", "S2")):
        (folder / f"{name}.json").write_text(json.dumps({"subject": who}))
    with pytest.raises(AnalyseError, match="split: sidecars name 2 subjects: give one patient's cines per folder"):
        read_patient(folder)
    (folder / "la_4ch.json").write_text(json.dumps({"subject": "S1"}))
    assert sorted(c.view for c in read_patient(folder)[0]) == ["2CH", "4CH"]


def test_a_cohort_gives_one_report_per_subject_a_summary_and_resumes(tmp_path, subject, broken_run):
    cohort = tmp_path / "cohort"
    for name in ("DOE_1234567", "ROE_7654321"):
        nifti_patient(cohort / name, subject)
    (cohort / "empty_ROW_0000001").mkdir()  # unreadable: recorded, the others go on
    (cohort / "README.md").write_text("cohort notes")
    assert not is_cohort(cohort)  # a folder that reads as no patient: named with --cohort
    shutil.rmtree(cohort / "empty_ROW_0000001")
    assert is_cohort(cohort) and not is_cohort(cohort / "DOE_1234567")
    (cohort / "empty_ROW_0000001").mkdir()
    with pytest.raises(AnalyseError, match="lies in the cohort folder"):
        analyse_cohort(cohort, broken_run, cohort / "reports", log=lambda *_: None, progress=False)
    files = analyse_cohort(cohort, broken_run, tmp_path / "out", log=lambda *_: None, progress=False)
    summary = pd.read_csv(files["csv"])
    assert list(summary.subject) == ["S001", "S002", "S003"]
    assert list(summary.status[:2]) == ["reported", "reported"] and summary.status[2].startswith("failed")
    assert (summary.numbers[:2] == 0).all() and "segmentation: LAVmax" in summary.columns  # smoke: research only
    text = "".join(re.sub(r"base64,[A-Za-z0-9+/=]+", "", p.read_text()) for p in (tmp_path / "out").rglob("*")
                   if p.suffix in (".html", ".csv", ".json"))  # the figures' bytes aside
    assert not [n for n in ("DOE", "ROE", "ROW", "1234567", "7654321", "0000001") if n in text]
    stamp = (tmp_path / "out" / "S001" / "report.json").stat().st_mtime_ns
    assert main(["analyse", str(cohort), "--cohort", "--run", str(broken_run), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "S001" / "report.json").stat().st_mtime_ns == stamp  # finished: not redone
    nifti_patient(cohort / "ZED_1111111", subject)
    with pytest.raises(AnalyseError, match="another cohort or other models"):
        analyse_cohort(cohort, broken_run, tmp_path / "out", log=lambda *_: None, progress=False)


def test_a_number_reaches_the_main_table_only_from_a_model_with_its_own_passed_check_and_an_interval(tmp_path,
                                                                                                     subject):
    """patient001's failing heart (no sex given) reads abnormal; the long-axis numbers of a model without its own
    passed check, and frames without an interval, are research outputs."""
    from cmrlib.analyse import Body, write_report
    from cmrlib.predictor import Prediction

    torch.manual_seed(0)
    nets = {"SAX": unet11(6, width=0.0625).eval(), "LAX": unet11(6, width=0.0625).eval()}
    cal = lambda hw: dict(half_width=hw, n=30, level=0.9, coverage=0.9)  # noqa: E731
    prov = dict(trained_on="acdc", profile="default", real_check="a check on real patients",
                intervals=dict(LVEDV=cal(12.0), LVESV=cal(12.0), LVEF=cal(5.0), RVEF=cal(19.0), LAVmax=cal(8.0)),
                model_checks=dict(SAX=dict(check="SAX on 15 held-out ACDC patients", passed=True),
                                  LAX=dict(check="phantom-only long-axis model", passed=False)))
    pred = segmentation.Predictor(nets, provenance=prov)
    res = Prediction("segmentation", "m")
    for m, v, u in (("LVEDV", 257.0, "mL"), ("LVESV", 197.0, "mL"), ("LVEF", 23.3, "%"), ("RVEF", 22.1, "%")):
        res.add(m, v, u, "patient_SAX")
    for m, v, u in (("LAVmax", 60.0, "mL"), ("ED (4CH)", 9, "frame"), ("ES (4CH)", 8, "frame")):
        res.add(m, v, u, "patient_4CH")
    results = [dict(method="segmentation", result=res, why=None, seconds=0.1, provenance=prov, model="m",
                    predictor=pred)]
    cines = [subject[k] for k in sorted(subject)]
    files = write_report(results, cines, [], {}, tmp_path, Body(), "default")
    rep, page = json.loads(files["json"].read_text()), files["html"].read_text()
    assert rep["numbers"] == 4 and (rep["abnormal"], rep["uncertain"], rep["withheld"]) == (4, 1, 0)
    aside = {r["measure"]: r["research"] for r in rep["research_numbers"]}
    assert set(aside) == {"LAVmax", "ED (4CH)", "ES (4CH)"} and "LAX model has no passed" in aside["LAVmax"]
    assert "4 abnormal" in page and "phantom-only long-axis model" in page and "<b>abnormal</b>" in page
    tab = pd.read_csv(files["csv"]).set_index("measure")
    assert tab.loc["LVEF", "grade"] == "reduced" and tab.loc["LVEDV", "vs_normal"] == "above"
    assert "spans 90 % of the 10-frame cycle" in tab.loc["ED (4CH)", "flag"]
    assert "LVEF" in rep["reference_ranges"] and "ESC" in rep["reference_ranges"]["LVEF"]
    shown = with_intervals(table([("LAVmax", 60.0, "mL"), ("LAVmin", 5.0, "mL"), ("MAPSE", 9.0, "mm")]),
                           dict(intervals=dict(LAVmax=cal(12.0), LAVmin=cal(12.0))))
    assert shown.low.tolist()[:2] == [48.0, 3.0] and shown.high.tolist()[:2] == [72.0, 17.0]  # inside human bounds
    assert np.isnan(shown.low[2])  # no calibration for MAPSE: no interval
    row = next(shown.assign(measure=shown.measure).itertuples())
    assert _interval(row, dict(LAVmax=cal(12.0))) == "48-72 (90%, calibrated on 30 patients)"
    scaled = with_intervals(table([("LVEDV", 300.0, "mL"), ("LVEDV", 100.0, "mL")]),
                            dict(intervals=dict(LVEDV=dict(cal(0.1), scale="value"))))
    assert scaled.low.tolist() == [270.0, 90.0] and scaled.high.tolist() == [330.0, 110.0]  # 10 % of each value
    assert "LVEDV: a width in proportion to the patient's value" in calibration(
        dict(intervals=dict(LVEDV=dict(cal(0.1), scale="value", calibrated_on="ACDC"))))
    assert "of a known scale" in provenance_problem(dict(intervals=dict(LVEDV=dict(cal(0.1), scale="log"))))
    unsure = with_intervals(table([("LVEF", 50.0, "%"), ("LVM", 100.0, "g"), ("RVEF", 50.0, "%")]),
                            dict(intervals={m: dict(cal(40.0), scale="entropy") for m in ("LVEF", "LVM", "RVEF")}),
                            interval_spread(dict(uncertainty_ed_es=dict(SAX=dict(LV=0.1, MYO=0.25)))))
    assert unsure.low.tolist()[:2] == [46.0, 90.0] and unsure.high.tolist()[:2] == [54.0, 110.0]  # 40 x its entropy
    assert np.isnan(unsure.low[2])  # no RV entropy measured: no interval rather than a made-up one
    assert "LVEF: a width in proportion to the segmenter's uncertainty on this patient" in calibration(
        dict(intervals=dict(LVEF=dict(cal(40.0), scale="entropy", calibrated_on="ACDC"))))
    assert provenance_problem(dict(intervals=dict(LVEF=dict(cal(40.0), scale="entropy")))) is None


def test_a_cine_the_segmenter_is_unsure_of_is_called_unlike_its_training_data(tmp_path, subject):
    from cmrlib.methods.segmentation.predict import uncertainty_reference

    torch.manual_seed(0)
    nets = {"SAX": unet11(6, width=0.0625).eval(), "LAX": unet11(6, width=0.0625).eval()}
    store = type("Store", (), {"read": lambda self, cid: subject[cid]})()
    ref = uncertainty_reference(nets["LAX"], store, ["2CH", "4CH"])
    assert ref and all(0.0 <= v <= 1.0 for v in ref.values())
    sure = {k: 0.0 for k in ref}  # a yardstick no cine can stay under
    run = tmp_path / "run"
    segmentation.Predictor.from_models(nets, dict(trained_on="phantom"), {"LAX": sure, "SAX": sure}).save(
        run / "predictors" / "segmentation.predictor")
    files = analyse(nifti_patient(tmp_path / "p", subject), run, tmp_path / "r", log=lambda *_: None)
    rep, page = json.loads(files["json"].read_text()), files["html"].read_text()
    assert set(rep["unfamiliar"]) == {"2CH", "4CH"} and "Unlike its training data?" in page
    assert "validation p95" in page
