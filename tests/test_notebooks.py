"""Every numbered notebook runs end to end with the smoke profile, handing files to the next."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cmrlib import runner
from cmrlib.predictor import METHODS, predictor_class
from cmrlib.store import CohortStore

TITLES = {m: predictor_class(m).title for m in METHODS}  # each method's section heading in a patient report

# the smoke run is made once per test session (`smoke_shared` in conftest.py); these tests read this worker's copy
pytestmark = pytest.mark.slow


def test_every_notebook_ran(smoke_run):
    out, rec = smoke_run
    assert rec["status"] == "ok"
    assert [r["notebook"] for r in rec["notebooks"]] == [p.name for p in runner.discover()]
    assert all(r["status"] == "ok" for r in rec["notebooks"])


def test_no_cross_fitted_model_trained_on_its_own_folds_patients_and_the_folds_are_the_real_cohorts(smoke_run):
    """Notebook 01's fold k model learned (and calibrated on) only other folds' patients, and its folds are the ones
    notebook 02 cross-validates the real SAX cohort over."""
    out, _ = smoke_run
    spec_file = out / "01" / "crossfit.json"
    if not spec_file.exists():
        pytest.skip("no real data: notebook 01 cross-fitted nothing")
    spec = json.loads(spec_file.read_text())
    folds = spec["folds"]
    for k, model in spec["models"].items():
        settings = json.loads((out / "01" / model).with_suffix(".settings.json").read_text())
        seen = [c.removesuffix("_SAX") for c in settings["extra"] + settings["calibrate_on"]]
        assert seen and all(folds[s] != int(k) for s in seen), k
    real = pd.read_csv(out / "02" / "real_predictions.csv").drop_duplicates("subject")
    assert all(folds[r.subject] == r.fold for r in real.itertuples())


def test_one_detector_has_one_number_in_02_and_07(smoke_run):
    """The run segmenter's LV volume curve (its extremes, no smoothing) is a detector in 02 and an agreement row in
    07: both read each cine with the same roll and the same cross-fitted model, so both give the same frame errors."""
    out, _ = smoke_run
    if not (out / "07" / "real_frames.csv").exists():
        pytest.skip("no real SAX patients in this run")
    afd = pd.read_csv(out / "02" / "real_afd_table.csv").set_index("method").loc["LV volume curve (run segmenter, "
                                                                                  "smooth 1)"]
    frames = pd.read_csv(out / "07" / "real_frames.csv").set_index(["method", "frame"])
    curve = "run's segmenter, out of fold, LV curve"
    assert frames.loc[(curve, "ED"), "mean_abs"] == pytest.approx(afd.aFD_ED, abs=1e-3)
    assert frames.loc[(curve, "ES"), "mean_abs"] == pytest.approx(afd.aFD_ES, abs=1e-3)
    assert frames.loc[(curve, "ES"), "n"] == afd.n


def test_each_notebook_leaves_a_figure(smoke_run):
    out, rec = smoke_run
    figs = out / "figures"
    for r in rec["notebooks"]:
        nn = r["notebook"][:2]
        found = list((figs / "paper").glob("*.png")) if nn == "09" else list(figs.glob(f"{nn}_*.png"))
        assert found, f"{r['notebook']} wrote no figure"


def test_each_method_notebook_lists_its_headline_tables_for_the_report(smoke_run):
    """The report learns every method's tables from the notebooks' own lists, in notebook order."""
    from cmrlib.analysis import report

    out, _ = smoke_run
    listed = {f.parent.name: json.loads(f.read_text()) for f in out.glob("[0-9][0-9]/headlines.json")}
    assert sorted(listed) == ["01", "02", "03", "04", "05", "06", "07", "08"] and all(listed.values()), listed
    assert all((out / nn / name).is_file() for nn, names in listed.items() for name in names)
    shown = [title for title, _ in report.headlines(out) if title[:2] in listed]
    assert shown == [f"{nn} · {title}" for nn in sorted(listed) for title in listed[nn].values()]


def test_the_readme_results_table_is_the_smoke_runs_and_the_drift_check_passes_on_it(smoke_run, tmp_path, capsys):
    """A row per notebook 01-08 from its glance.json; every number a cell shows is one of that notebook's targets;
    a page filled from the run has no drift, and one number changed is named."""
    import numpy as np

    from cmrlib.analysis import report
    from cmrlib.cli import main

    out, _ = smoke_run
    t = report.glance_table(out)
    assert [m[-3:-1] for m in t["method"]] == ["01", "02", "03", "04", "05", "06", "07", "08"]
    tg = report.targets_table(out)
    for (method, cells) in zip(t["method"], t[["phantom", "real patients"]].itertuples(index=False)):
        shown = {f"{v:.3g}" for v in pd.to_numeric(tg[tg.notebook == method[-3:-1]].value, errors="coerce")
                 if np.isfinite(v)}
        for cell in cells:
            for number in re.findall(r"(?<![\[\d.,-])-?\d+\.?\d*(?:e-?\d+)?(?= \[|;|$)", cell):
                assert number in shown, (method, cell, number)
    page = tmp_path / "README.md"
    page.write_text(f"# cmrlib\n\n{report.GLANCE_MARKERS[0]}\n{report.GLANCE_MARKERS[1]}\n\n## Run time\n\n"
                    f"{report.TIMING_MARKERS[0]}\n{report.TIMING_MARKERS[1]}\n\n"
                    "<!-- run-table 04/table2.csv cols=row|F1|AUC|paper F1|paper AUC -->\n<!-- /run-table -->\n")
    assert main(["report", str(out), "--readme", str(page)]) == 0
    shown = re.sub(" +", " ", page.read_text())
    assert "| 02 and 03 side by side |" in shown  # the smoke profile's first pair
    assert "| row | F1 | AUC | paper F1 | paper AUC |" in shown and "| CUSSP-SIAM-25 |" in shown  # 04's Table 2
    assert main(["report", str(out), "--check", str(page)]) == 0
    first = next(x for x in re.findall(r"\| (-?\d+\.\d+)", page.read_text()))
    page.write_text(page.read_text().replace(f"| {first}", "| 123.5", 1))
    capsys.readouterr()
    assert main(["report", str(out), "--check", str(page)]) == 1
    assert f"123.5 -> {first}" in capsys.readouterr().out


def test_analysis_notebooks_read_the_run_and_rerun_identically(smoke_run):
    """07-09 use only the run folder: a second run of them on it writes byte-identical tables and report."""
    from cmrlib.analysis.agreement import LONG_COLUMNS

    out, _ = smoke_run
    assert list(pd.read_csv(out / "07" / "measures.csv").columns) == LONG_COLUMNS
    index = (out / "figures" / "README.md").read_text()
    assert "07_icc_phantom.png" in index and "paper/" in index
    files = [f for nn in ("07", "08", "09") for f in sorted((out / nn).glob("*")) if f.suffix in (".csv", ".md")
             and f.name != "timings.csv"]
    before = {f: f.read_bytes() for f in files}
    runner.rerun(out, ["07", "08", "09"], log=lambda *_: None)
    changed = [f.name for f in files if f.read_bytes() != before[f] and f.name != "report.md"]
    assert not changed, f"tables differ on a re-run: {changed}"
    rec = json.loads((out / "run.json").read_text())
    assert [r["notebook"][:2] for r in rec["notebooks"]] == [p.name[:2] for p in runner.discover()]


def test_cohort_has_splits_and_manifest(smoke_run):
    out, _ = smoke_run
    store = CohortStore(out / "cohort")
    m = store.manifest()
    assert len(store) > 0 and set(m["split"]) <= {"train", "valid", "test"} and m["split"].notna().all()


def test_heartmae_hands_measures_to_07_and_subject_features_to_08(smoke_run):
    out, _ = smoke_run
    assert "HeartMAE" in set(pd.read_csv(out / "07" / "measures.csv")["method"])
    assert {"HeartMAE", "MAE-ViT-B", "random"} <= set(pd.read_csv(out / "08" / "rand_indices.csv")["features"])
    feats = pd.read_csv(out / "06" / "subject_features_HeartMAE.csv")
    assert feats["subject"].is_unique and len(feats) == CohortStore(out / "cohort").manifest()["subject"].nunique()


def test_a_labels_table_in_a_folder_named_like_a_patient_leaves_no_trace(smoke_run, tmp_path):
    """Notebook 04 with a user's labels table under `DOE^JANE_ID-998877/` (and a subject the store lacks, named
    like a patient): the folder and that name reach no table, record, executed notebook or figure index."""
    out, _ = smoke_run
    subjects = sorted(CohortStore(out / "cohort").manifest().query("view == '4CH'")["subject"].unique())
    table = tmp_path / "DOE^JANE_ID-998877" / "labels_04.csv"
    table.parent.mkdir()
    pd.DataFrame({"subject": [*subjects, "DOE^JANE"], "mr": [i % 2 for i in range(len(subjects) + 1)]}).to_csv(
        table, index=False)
    runner.run("smoke", ["04"], {"labels_csv": str(table)}, out, out / "figures", log=lambda *_: None)
    texts = [f for f in out.rglob("*") if f.is_file() and f.suffix in (".csv", ".json", ".ipynb", ".md", ".txt")
             and "cohort" not in f.relative_to(out).parts]
    marks = ("ID-998877", "DOE^JANE", "JANE_ID")  # never the bare digits: a timing such as 7.226904244998877 holds them
    leaks = [str(f.relative_to(out)) for f in texts if any(s in f.read_text(errors="ignore") for s in marks)]
    assert not leaks, f"the folder or subject name reached {leaks}"
    assert (out / "04" / "labels.csv").exists() or (out / "04" / "table2.csv").exists()
    assert "$CMRLIB_PATH_" in json.dumps([r for r in json.loads((out / "run.json").read_text())["notebooks"]
                                          if r["notebook"].startswith("04")][0]["parameters"])


def test_every_method_leaves_a_predictor_that_needs_only_the_cines(smoke_run):
    """Notebooks 01-06 each export their method's Predictor; reloaded, it reads a phantom subject's cines with no
    other argument (a smoke model may find no valve: the reason is then given, never an exception)."""
    from cmrlib import predictor

    out, _ = smoke_run
    store = CohortStore(out / "cohort")
    subject = store.manifest().query("split == 'test'").subject.iloc[0]
    cines = [store.read(i) for i in store.manifest().query("subject == @subject").cine_id]
    said = {}
    for m in predictor.METHODS:
        p = predictor.load(out / "predictors" / predictor.file_name(m))
        assert p.method == m and p.provenance["trained_on"] == "phantom" and p.provenance["notebook"] == \
            f"0{predictor.METHODS.index(m) + 1}"
        try:
            said[m] = p.predict(cines).table()
        except predictor.NotApplicable as e:
            said[m] = str(e)
    measured = {m for m, r in said.items() if isinstance(r, pd.DataFrame) and len(r) and r.value.notna().any()}
    assert measured >= {"segmentation", "edes", "mvnet", "sslhf", "heartmae"}, said


LAYOUT_WORDS = {"training", "testing"}  # a dataset's folder words, which the report's prose may use


@pytest.mark.parametrize("patient", ["ukbb-demo/1", "mvnet-dicom-sample", "acdc/training/patient090"])
def test_analyse_reports_a_real_patient_with_every_method(smoke_run, data_dir, tmp_path, patient):
    """`cmrlib analyse` on the real demo cines: every method has its section, with measures or the reason why not,
    labelled a phantom demonstration; neither the folder's name nor a DICOM field reaches the report."""
    from cmrlib.analyse import analyse

    out, _ = smoke_run
    if not (data_dir / patient).exists():
        pytest.skip(f"{patient} not in the real-data folder")
    files = analyse(data_dir / patient, out, tmp_path / "report", log=lambda *_: None)
    page = files["html"].read_text()
    assert all(t in page for t in TITLES.values()) and "Demonstration only" in page
    rep = json.loads(files["json"].read_text())
    assert {m["method"] for m in rep["methods"]} == set(TITLES) == set(METHODS)
    assert all(m["available"] or m["why"] for m in rep["methods"])
    views = {c["view"] for c in rep["cines"]}
    available = {m["method"] for m in rep["methods"] if m["available"]}
    assert "segmentation" in available and ("mvnet" in available) == bool(views & {"2CH", "4CH"})
    for f in files.values():
        text = f.read_text(errors="ignore")
        own = [part for part in Path(patient).parts if part not in LAYOUT_WORDS]  # the folders that name a patient
        assert not [part for part in own if len(part) > 2 and part in text], own
        assert "SIEMENS" not in text and str(data_dir) not in text and patient not in text


def _said(p, cines):
    """What a predictor says about one subject: its table, or why it cannot say anything."""
    from cmrlib import predictor

    try:
        return p.predict(cines).table()
    except predictor.NotApplicable as e:
        return str(e)


def test_every_predictor_predicts_the_same_after_save_and_load(smoke_run, tmp_path):
    """A predictor written again and read back computes exactly what it did: same content key, same measures."""
    from cmrlib import predictor

    out, _ = smoke_run
    store = CohortStore(out / "cohort")
    subject = store.manifest().query("split == 'test'").subject.iloc[0]
    cines = [store.read(i) for i in store.manifest().query("subject == @subject").cine_id]
    have, absent, broken = predictor.run_predictors(out)
    assert set(have) == set(predictor.METHODS) and not absent and not broken
    for m, p in have.items():
        p.save(tmp_path / "predictors" / predictor.file_name(m))
    again, _, _ = predictor.run_predictors(tmp_path)
    for m in predictor.METHODS:
        assert again[m].content_key() == have[m].content_key(), m
        before, after = _said(have[m], cines), _said(again[m], cines)
        if isinstance(before, str):
            assert before == after, m
        else:
            pd.testing.assert_frame_equal(before, after, check_exact=True)


def test_a_payload_planted_in_a_run_folder_runs_nothing_in_a_notebook(smoke_run, tmp_path):
    """A shared run folder whose segmentation predictor was replaced by a pickle: notebook 07 stops with the
    file's name and the payload never runs."""
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    out, _ = smoke_run
    shared = tmp_path / "shared_run"
    shared.mkdir()
    for entry in out.iterdir():  # the run as received, its analysis notebooks writing into folders of their own
        if entry.name in ("predictors", "07", "figures"):
            continue
        if entry.is_dir():  # hard links: the run's own files, not links that lead outside it
            shutil.copytree(entry, shared / entry.name, copy_function=os.link)
        else:
            shutil.copy(entry, shared / entry.name)
    planted = shared / "predictors" / "segmentation.predictor"
    shutil.copytree(out / "predictors", shared / "predictors")
    (planted / "predictor.json").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(runner.NotebookFailed, match="segmentation.predictor"):
        runner.rerun(shared, ["07"], figures=tmp_path / "figures", log=lambda *_: None)
    shutil.rmtree(planted)
    planted.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(runner.NotebookFailed, match="segmentation.predictor"):
        runner.rerun(shared, ["07"], figures=tmp_path / "figures", log=lambda *_: None)
    assert not (tmp_path / "pwned").exists()


def test_the_report_renders_in_a_browser_as_a_person_sees_it(smoke_run, data_dir, tmp_path, browser):
    """`cmrlib analyse` on the real DICOM sample, opened in headless Chromium: no console error, every image decoded,
    every method's section there, the flags and normal-range columns visible, and no DICOM identity field or folder
    name anywhere in the page."""
    import pydicom

    from cmrlib.analyse import analyse

    out, _ = smoke_run
    patient = data_dir / "mvnet-dicom-sample"
    if not patient.exists():
        pytest.skip("mvnet-dicom-sample not in the real-data folder")
    files = analyse(patient, out, tmp_path / "report", log=lambda *_: None, sex="female")
    page, errors = browser.new_page(), []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(files["html"].resolve().as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
    headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
    headline = page.inner_text("#tier-summary") if page.is_visible("#tier-summary") else ""
    row = "#research tr.flagged td.check, #research tr.uncertain td.check, #research tr.ok td.check"
    hidden_before = not page.locator(row).first.is_visible()  # research outputs start collapsed
    page.click("#research > summary")
    shown_after = page.locator(row).first.is_visible()
    columns = page.eval_on_selector_all("table.measures th", "els => els.map(e => e.textContent)")
    lvef_range = page.locator("tr:has(td:text-is('LVEF')) td:nth-child(5)").first
    lvef_range = lvef_range.inner_text() if lvef_range.is_visible() else ""
    text = page.inner_text("body") + page.content()
    page.close()
    assert not errors, errors
    assert images and all(done and width > 0 for done, width in images), images
    assert set(TITLES.values()) <= set(headings) and "Input" in headings, headings
    assert headline.startswith("0 withheld, 0 uncertain, 0 abnormal")  # a smoke model's numbers are never counted
    assert hidden_before and shown_after and {"interval", "normal", "vs normal", "check"} <= set(columns)
    assert lvef_range == "51-71" and "female" not in text  # the sex sets the range and is never shown
    ds = pydicom.dcmread(next(p for p in sorted(patient.rglob("*")) if p.is_file() and p.suffix.lower() == ".dcm"),
                         stop_before_pixels=True)
    private = [str(ds.get(k, "")) for k in ("PatientName", "PatientID", "InstitutionName", "StationName",
                                            "ReferringPhysicianName", "AccessionNumber")]
    private += [patient.name, str(data_dir)]
    assert not [v for v in private if len(v) > 2 and v in text]


def test_a_checked_methods_interval_and_the_tier_headline_in_a_browser(smoke_run, data_dir, tmp_path, browser):
    """The report as a person sees it when one method has a real-data check: its numbers in the main table with
    their calibrated interval, the tier headline counting only them, every other method collapsed under research
    outputs."""
    from cmrlib.analyse import load_models, read_patient, run_all, write_report

    out, _ = smoke_run
    patient = data_dir / "mvnet-dicom-sample"
    if not patient.exists():
        pytest.skip("mvnet-dicom-sample not in the real-data folder")
    models = load_models(out)
    cines, notes = read_patient(patient)
    results = run_all(models.predictors, cines, log=lambda *_: None)
    seg = next(r for r in results if r["method"] == "segmentation")
    seg["result"].add("LAVmax", 60.0, "mL", seg["result"].cines.get("LAVmax", "patient_4CH"))
    seg["provenance"] = dict(seg["provenance"], profile="default", real_check="a check on real patients",
                             intervals={"LAVmax": dict(half_width=12.0, n=30, level=0.9, coverage=0.9)},
                             model_checks=dict(LAX=dict(check="a long-axis check on real patients", passed=True)))
    files = write_report(results, cines, notes, models.missing, tmp_path / "report", profile="default")
    page = browser.new_page()
    page.goto(files["html"].resolve().as_uri())
    headline = page.inner_text("#tier-summary")
    interval = page.locator("tr:has(td:text-is('LAVmax')) td.interval").first.inner_text()
    research_closed = not page.locator("#research td.check").first.is_visible()
    page.close()
    assert re.match(r"\d+ withheld, \d+ uncertain, \d+ abnormal \(of \d+ numbers from models with a passed "
                    "real-data check", headline)
    assert interval == "48-72 (90%, calibrated on 30 patients)" and research_closed


def test_a_failing_heart_reads_abnormal_in_a_browser_with_no_sex_given(smoke_run, data_dir, tmp_path, browser):
    """ACDC patient001 (dilated cardiomyopathy) with its reference volumes in the main table, as a SAX model with its
    own passed check and calibrated intervals would give them, no sex given: the headline counts them abnormal, each
    row says so, the LVEF is graded reduced, and the RV numbers without an interval are research outputs."""
    from cmrlib.analyse import body_of, load_models, read_patient, run_all, write_report
    from cmrlib.predictor import Prediction

    patient, ref = data_dir / "acdc" / "training" / "patient001", data_dir / "acdc-cine" / "reference.csv"
    if not (patient.is_dir() and ref.is_file()):
        pytest.skip("ACDC patient001 or acdc-cine/reference.csv not in the real-data folder")
    out, _ = smoke_run
    models = load_models(out)
    cines, notes = read_patient(patient)
    results = run_all(models.predictors, cines, log=lambda *_: None)
    seg = next(r for r in results if r["method"] == "segmentation")
    truth = pd.read_csv(ref).set_index("patient").loc["patient001"]
    res = Prediction("segmentation", seg["result"].model)
    for m in ("LVEDV", "LVESV", "LVEF", "LVM", "RVEDV", "RVESV", "RVEF"):
        res.add(m, float(truth[m]), {"LVEF": "%", "RVEF": "%", "LVM": "g"}.get(m, "mL"), cines[0].cine_id)
    cal = lambda hw: dict(half_width=hw, n=29, level=0.9, coverage=0.93)  # noqa: E731
    seg["result"] = res
    seg["provenance"] = dict(seg["provenance"], profile="default", real_check="SAX model on held-out ACDC patients",
                             intervals=dict(LVEDV=cal(12.6), LVESV=cal(11.4), LVEF=cal(5.1), LVM=cal(20.9)),
                             model_checks=dict(SAX=dict(check="SAX model on held-out ACDC patients", passed=True)))
    files = write_report(results, cines, notes, models.missing, tmp_path / "report", body_of(cines),
                         profile="default")  # height and weight from Info.cfg: the indexed LV mass too
    page = browser.new_page()
    page.goto(files["html"].resolve().as_uri())
    headline = page.inner_text("#tier-summary")
    lvef = page.locator("tr.abnormal:has(td:text-is('LVEF'))").first
    lvef_text = lvef.inner_text() if lvef.is_visible() else ""
    abnormal_rows = page.locator("tr.abnormal").count()
    rvef_hidden = not page.locator("tr:has(td:text-is('RVEF'))").first.is_visible()
    page.close()
    assert re.match(r"0 withheld, 0 uncertain, 4 abnormal \(of 5 numbers", headline), headline  # LVEDV, LVESV,
    assert "reduced (LVEF grade)" in lvef_text and "abnormal" in lvef_text  # LVEF and the indexed LV mass
    assert "women 51-71, men 48-68" in lvef_text and abnormal_rows >= 4 and rvef_hidden  # RV: research, collapsed
