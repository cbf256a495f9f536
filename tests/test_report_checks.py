"""A patient report flags every number it cannot vouch for: human bounds, consistency rules, the views a measure
needs, implausible acquisition metadata, and the normal range for the patient's sex; a cohort folder gives one
report per subject, resumably, and never merges two subjects' cines."""
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
from cmrlib.analyse import AnalyseError, analyse, read_patient
from cmrlib.analyse_batch import analyse_cohort, is_cohort
from cmrlib.cli import main
from cmrlib.io.qa import acquisition_flags
from cmrlib.methods import segmentation
from cmrlib.models import unet11
from cmrlib.phantom import simulate_subject

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


def test_every_impossible_number_is_flagged_with_the_rule_it_breaks():
    got, _ = plausible.check(table(IMPOSSIBLE), {"SAX"})
    f = flags(got)
    assert all(f.values()), f
    assert "outside human range" in f["LVEDV"] and "outside human range" in f["RVEF"]
    assert "breaks RVEDV >= RVESV" in f["RVESV"] and "outside human range" in f["LVM"]
    lax, _ = plausible.check(table([("MAPSE", 0.06, "mm"), ("e_prime", 0.02, "cm/s")], "mvnet", "2CH+4CH"),
                             {"2CH", "4CH"})
    assert all("outside human range" in v for v in flags(lax).values())


def test_a_healthy_consistent_heart_is_not_flagged_and_sits_in_its_normal_range():
    got, hidden = plausible.check(table(HEALTHY), {"SAX"}, sex="male", bsa=2.0)
    assert not any(got.flag) and hidden.empty
    ef = got.set_index("measure").loc["LVEF"]
    assert ef.vs_normal == "within" and ef.normal == "48-68" and ef.z == pytest.approx(0.4)
    lvmi = got.set_index("measure").loc["LVMi"]  # indexed from BSA where a normal range exists
    assert lvmi.value == pytest.approx(55.0) and lvmi.unit == "g/m²" and lvmi.vs_normal == "within"
    female, _ = plausible.check(table([("LVEF", 45.0, "%")]), {"SAX"}, sex="female")
    assert female.vs_normal[0] == "below" and female.z[0] == pytest.approx(-3.2)
    nosex, _ = plausible.check(table([("LVEF", 45.0, "%")]), {"SAX"})
    assert nosex.normal[0] == "" and "sex" in nosex.vs_normal[0]


def test_consistency_rules_catch_numbers_that_do_not_add_up():
    rows = [r if r[0] != "LVSV" else ("LVSV", 70.0, "mL") for r in HEALTHY]  # EDV - ESV = 90, not 70
    f = flags(plausible.check(table(rows), {"SAX"})[0])
    assert "breaks LVEDV - LVESV = LVSV" in f["LVSV"] and "breaks LVEF = LVSV / LVEDV" in f["LVEF"]
    unequal = [r if r[0] not in ("RVESV", "RVSV", "RVEF") else {"RVESV": ("RVESV", 110.0, "mL"),
               "RVSV": ("RVSV", 50.0, "mL"), "RVEF": ("RVEF", 31.25, "%")}[r[0]] for r in HEALTHY]
    assert plausible.SV_RULE in flags(plausible.check(table(unequal), {"SAX"})[0])["RVSV"]
    mr = pd.concat([table(unequal), table([("MR (at the validation threshold)", 1.0, "yes=1")], "cussp")])
    assert not flags(plausible.check(mr, {"SAX", "4CH"})[0])["RVSV"]  # a leaking valve explains unequal volumes
    atria = plausible.check(table([("LAVmax", 40.0, "mL"), ("LAVmin", 60.0, "mL")], cine="patient_4CH"), {"4CH"})[0]
    assert "breaks LAVmax >= LAVmin" in flags(atria)["LAVmax"]


def test_a_measure_these_views_cannot_show_is_withheld_and_a_missing_one_says_so():
    mae = table([("LVEF", 55.0, "%"), ("LAVmax", 60.0, "mL"), ("MAPSE", 12.0, "mm"), ("TAPSE", 20.0, "mm")],
                "heartmae", "SAX")
    shown, hidden = plausible.check(mae, {"SAX"})
    assert list(shown.measure) == ["LVEF"] and set(hidden.measure) == {"LAVmax", "MAPSE", "TAPSE"}
    nan = plausible.check(table([("LAVmax", float("nan"), "mL")], cine="patient_4CH"), {"4CH"})[0]
    assert flags(nan)["LAVmax"] == "could not be measured from these cines"


def test_ed_and_es_frames_named_by_two_methods_must_agree_cyclically():
    def frames(seg_ed, edes_ed, n=30):
        tab = pd.concat([table([("ED (SAX)", seg_ed, "frame")]), table([("ED (SAX)", edes_ed, "frame")], "edes")])
        return plausible.check(tab, {"SAX"}, {"SAX": n})[0]

    assert not any(frames(0, 29).flag) and not any(frames(3, 5).flag)  # frame 29 is one before frame 0
    far = frames(0, 10)
    assert all("more than 2 frames away" in f for f in far.flag)
    assert "outside the cine's 30 frames" in flags(frames(0, 31))["ED (SAX)"]


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


def test_a_broken_models_report_flags_its_numbers_and_says_smoke(tmp_path, subject, broken_run):
    patient = nifti_patient(tmp_path / "SMITH^JOHN", subject, frame_ms=1000.0)
    files = analyse(patient, broken_run, tmp_path / "report", log=lambda *_: None, sex="female")
    page, rep = files["html"].read_text(), json.loads(files["json"].read_text())
    tab = pd.read_csv(files["csv"]).fillna(dict(flag=""))
    assert "Smoke profile" in page and rep["profile"] == "smoke" and "Smoke profile" in rep["methods"][0]["warnings"][0]
    assert rep["flagged"] == (tab.flag != "").sum() > 0 and f"{rep['flagged']} of {rep['numbers']}" in page
    bad = tab[[plausible.bounds(m, u) is not None and np.isfinite(v) and not
               plausible.bounds(m, u)[0] <= v <= plausible.bounds(m, u)[1]
               for m, v, u in zip(tab.measure, tab.value, tab.unit)]]
    assert (bad.flag != "").all()  # no number outside human bounds goes unflagged
    assert all("frame interval 1000 ms" in q["timing_flags"] for q in rep["input"]) and "SMITH" not in page and "female" not in page


def test_a_folder_of_two_patients_is_refused_naming_the_files(tmp_path, subject):
    folder = nifti_patient(tmp_path / "mixed", subject, prefix="a_")
    nifti_patient(folder, subject, prefix="b_")
    with pytest.raises(AnalyseError, match=r"two (2|4)CH cines \(a_la_.ch.nii.gz, b_la_.ch.nii.gz\)"):
        read_patient(folder)


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
    assert (summary.flagged[:2] > 0).all() and "segmentation: LAVmax" in summary.columns
    text = "".join(re.sub(r"base64,[A-Za-z0-9+/=]+", "", p.read_text()) for p in (tmp_path / "out").rglob("*")
                   if p.suffix in (".html", ".csv", ".json"))  # the figures' bytes aside
    assert not [n for n in ("DOE", "ROE", "ROW", "1234567", "7654321", "0000001") if n in text]
    stamp = (tmp_path / "out" / "S001" / "report.json").stat().st_mtime_ns
    assert main(["analyse", str(cohort), "--cohort", "--run", str(broken_run), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "S001" / "report.json").stat().st_mtime_ns == stamp  # finished: not redone
    nifti_patient(cohort / "ZED_1111111", subject)
    with pytest.raises(AnalyseError, match="another cohort or other models"):
        analyse_cohort(cohort, broken_run, tmp_path / "out", log=lambda *_: None, progress=False)


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
