"""The one protocol every method shares: a Predictor file holds the network and its preprocessing, `load` gives it
back with the predictors it needs, and methods use each other only through it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from cmrlib import plausible, predictor
from cmrlib.analyse import AnalyseError, analyse, page_banners, read_patient
from cmrlib.cli import main
from cmrlib.labels import LV
from cmrlib.measure import volume_curve
from cmrlib.methods import cussp, segmentation
from cmrlib.models import unet11
from cmrlib.models.cussp import CUSSPNet
from cmrlib.phantom import simulate_subject

SMALL = dict(n_frames=10, matrix=64, pixel_mm=3.0)


@pytest.fixture(scope="module")
def subject():
    return simulate_subject(1, seed=0, config=SMALL, views=("SAX", "2CH", "4CH"))


def segmenter() -> segmentation.Predictor:
    """A narrow segmenter (untrained: the protocol, not the accuracy, is under test)."""
    torch.manual_seed(0)
    return segmentation.Predictor({"SAX": unet11(6, width=0.0625).eval(), "LAX": unet11(6, width=0.0625).eval()},
                                  provenance=dict(trained_on="phantom"))


def test_a_predictor_round_trips_and_predicts_from_the_cines_alone(tmp_path, subject):
    p = segmenter()
    before = p.predict(list(subject.values()))
    again = predictor.load(p.save(tmp_path / "segmentation.predictor"))
    after = again.predict(list(subject.values()))
    assert type(again) is segmentation.Predictor and again.provenance == dict(trained_on="phantom")
    assert before.measures.keys() == after.measures.keys() and {"LVEF", "LAVmax", "RAEF"} <= set(after.measures)
    for cid, lab in before.detail["labels"].items():
        assert np.array_equal(lab, after.detail["labels"][cid])
    tab = after.table()
    assert list(tab.columns) == ["method", "model", "measure", "value", "unit", "cine"]
    assert tab.set_index("measure").loc["LVEF", "unit"] == "%"


def test_a_cine_segmented_once_serves_every_method_that_reads_its_labels(subject, monkeypatch):
    """The segmentation Predictor keeps the last cines' labels by content: a second read of the same cine (ED/ES's
    volume curve after the measures) gives the same labels and entropy without segmenting again; changed pixels,
    or mirroring switched on, segment again; the kept labels are never handed out to be written into."""
    import pickle

    from cmrlib.methods.segmentation import stored

    p, sax = segmenter(), subject["SAX"]
    calls = []
    real = stored.predict
    monkeypatch.setattr(stored, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    first_acc, again_acc = {}, {}
    first = p.labels(sax, first_acc)
    again = p.labels(sax, again_acc)
    assert len(calls) == 1 and np.array_equal(first, again) and first_acc == again_acc and first_acc
    again[:] = 0  # the caller's copy
    assert np.array_equal(p.labels(sax), first) and len(calls) == 1
    changed = sax.rolled(1)
    p.labels(changed)
    assert len(calls) == 2
    p.nets["SAX"].tta = True
    p.labels(sax)
    assert len(calls) == 3
    p.nets["SAX"].tta = False
    assert "_labelled" not in pickle.loads(pickle.dumps(p)).__dict__  # a worker gets the networks, not the labels
    p.forget()
    p.labels(sax)
    assert len(calls) == 4


def test_a_run_segments_a_cine_once_across_its_notebooks(subject, tmp_path, monkeypatch):
    """Segmenters that keep their labels in a run folder (each notebook loads its own): a second one reads the
    first's file instead of segmenting, with the same labels and entropy; other weights, another decision offset,
    mirroring, or other pixels segment again; a damaged file, a pickle or a link out planted in its place is
    segmented again and replaced."""
    from cmrlib.methods.segmentation import stored

    calls = []
    real = stored.predict
    monkeypatch.setattr(stored, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    folder, sax = tmp_path / "labels", subject["SAX"]
    first_acc, again_acc = {}, {}
    first = segmenter().keep_labels_in(folder).labels(sax, first_acc)
    again = segmenter().keep_labels_in(folder).labels(sax, again_acc)  # another notebook's copy of the same weights
    assert len(calls) == 1 and np.array_equal(first, again) and first_acc == again_acc and first_acc
    assert len(list(folder.glob("*.npz"))) == 1 and not list(folder.glob(".*"))  # one file, no temporary left
    assert np.array_equal(segmenter().labels(sax), first) and len(calls) == 2  # no folder: segmented
    other = segmenter().keep_labels_in(folder)
    with torch.no_grad():
        next(other.nets["SAX"].parameters()).add_(0.01)
    other.labels(sax)
    shifted = segmenter().keep_labels_in(folder)
    shifted.nets["SAX"].log_prior = np.array([0.0, 0.5, 0, 0, 0, 0], np.float32)
    shifted.labels(sax)
    mirrored = segmenter().keep_labels_in(folder)
    mirrored.nets["SAX"].tta = True
    mirrored.labels(sax)
    segmenter().keep_labels_in(folder).labels(sax.rolled(1))
    assert len(calls) == 6 and len(list(folder.glob("*.npz"))) == 5
    for f in folder.glob("*.npz"):  # damaged: each is segmented again and replaced
        f.write_bytes(b"not an npz")
    assert np.array_equal(segmenter().keep_labels_in(folder).labels(sax), first) and len(calls) == 7
    planted = max(folder.glob("*.npz"), key=lambda f: f.stat().st_mtime)  # a pickle in its place is never unpickled
    np.savez(planted, labels=np.array([Path("x")], dtype=object), entropy=np.zeros((0, 4)))
    assert np.array_equal(segmenter().keep_labels_in(folder).labels(sax), first) and len(calls) == 8
    assert np.array_equal(segmenter().keep_labels_in(folder).labels(sax), first) and len(calls) == 8  # replaced
    secret = tmp_path / "secret.npz"  # a link that leads out: never read, replaced by a file, its target untouched
    np.savez(secret, labels=np.zeros_like(first), entropy=np.zeros((0, 4)))
    kept = secret.read_bytes()
    planted.unlink()
    planted.symlink_to(secret)
    assert np.array_equal(segmenter().keep_labels_in(folder).labels(sax), first) and len(calls) == 9
    assert not planted.is_symlink() and secret.read_bytes() == kept


def test_notebook_01s_store_readings_serve_a_notebooks_predictor_through_the_label_store(subject, tmp_path,
                                                                                          monkeypatch):
    """Notebook 01 segments a store's cines with `predict_store` into the run's label store, with their entropy; a
    notebook's Predictor of the same network reads that file instead of segmenting (labels and entropy equal), a
    second `predict_store` segments nothing, and without the folder it segments again."""
    from cmrlib.methods.segmentation import stored
    from cmrlib.methods.segmentation.predict import predict_store
    from cmrlib.store import CohortStore

    store = CohortStore(tmp_path / "store")
    store.write(subject["SAX"])
    cid = store.ids()[0]
    calls = []
    real = stored.predict
    monkeypatch.setattr(stored, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    folder = tmp_path / "labels"
    p, sums, again, acc = segmenter().keep_labels_in(folder), {}, {}, {}
    labs = predict_store(p.nets["SAX"], store, [cid], progress=False, folder=folder, entropy=sums)
    assert len(calls) == 1 and sums[cid] and len(list(folder.glob("*.npz"))) == 1
    assert np.array_equal(p.labels(store.read(cid), acc), labs[cid]) and acc == sums[cid] and len(calls) == 1
    predict_store(p.nets["SAX"], store, [cid], progress=False, folder=folder, entropy=again)
    assert len(calls) == 1 and again == sums
    assert np.array_equal(predict_store(p.nets["SAX"], store, [cid], progress=False)[cid], labs[cid])
    assert len(calls) == 2


def test_the_entropy_an_interval_scales_with_is_read_at_the_ed_and_es_frames_measured(subject):
    """The report's uncertainty check reads the entropy over every frame; an interval in the 'entropy' scale reads it
    at the ED and ES frames the measures come from, as the calibration does on ACDC's ED/ES stacks."""
    from cmrlib.analyse import interval_spread
    from cmrlib.methods.segmentation.predict import mean_entropy

    p, sax, acc = segmenter(), subject["SAX"], {}
    out = p.predict([sax])
    p.labels(sax, acc)
    ed, es = out.detail["ed_es"][sax.cine_id]
    assert {t for t, _ in acc} == set(range(sax.n_frames))  # entropy kept per frame
    assert out.detail["uncertainty"]["SAX"] == mean_entropy(acc)
    assert out.detail["uncertainty_ed_es"]["SAX"] == mean_entropy(acc, [ed, es]) != mean_entropy(acc)
    at, spread = out.detail["uncertainty_ed_es"]["SAX"], interval_spread(out.detail)
    assert {"LVEF", "LVM", "RVEF"} & set(spread) == {m for m, k in (("LVEF", "LV"), ("LVM", "MYO"), ("RVEF", "RV"))
                                                     if k in at} != set()
    assert all(spread[m] == at[{"LVM": "MYO"}.get(m, m[:2])] for m in spread)  # a structure's own entropy


def test_content_key_follows_the_weights_and_decision_offsets_not_the_provenance(tmp_path):
    p = segmenter()
    key = p.content_key()
    again = predictor.load(p.save(tmp_path / "segmentation.predictor"))
    again.provenance = dict(trained_on="phantom", commit="another run")
    assert again.content_key() == key  # the same models exported again: caches built on them stay valid
    again.nets["SAX"].log_prior = np.ones(6, np.float32)  # calibrated decision offsets change what it predicts
    assert again.content_key() != key
    changed = segmenter()
    with torch.no_grad():
        next(changed.nets["LAX"].parameters()).add_(1.0)
    assert changed.content_key() != key


def test_load_names_the_file_and_refuses_what_is_not_a_predictor(tmp_path):
    with pytest.raises(predictor.PredictorError, match="nothing.predictor: no predictor here"):
        predictor.load(tmp_path / "nothing.predictor")
    (tmp_path / "text.predictor").write_text("not a model")
    with pytest.raises(predictor.PredictorError, match="text.predictor: a file of an older cmrlib format"):
        predictor.load(tmp_path / "text.predictor")
    future = segmenter().save(tmp_path / "future.predictor") / "predictor.json"
    future.write_text(future.read_text().replace('"format": 2', '"format": 99'))
    with pytest.raises(predictor.PredictorError, match="future.predictor: predictor.json has format 99"):
        predictor.load(tmp_path / "future.predictor")


def test_a_needed_predictor_travels_by_reference(tmp_path, subject):
    prep = dict(size=32, patch_mm=2.0, frames=10, window=5, crop_size=32, crop_mm=3.0)
    p = cussp.Predictor.from_model(CUSSPNet(10, 8, (16, 16), 8), "CUSSP-SIAM", prep, 0.5)
    p.save(tmp_path / "cussp.predictor")
    with pytest.raises(predictor.PredictorError, match="segmentation.predictor: no predictor here"):
        predictor.load(tmp_path / "cussp.predictor")
    segmenter().save(tmp_path / "segmentation.predictor")
    again = predictor.load(tmp_path / "cussp.predictor")
    assert isinstance(again.need("segmenter"), segmentation.Predictor)
    assert again.prep == dict(prep, input="cycle", threshold=0.5)
    with pytest.raises(predictor.NotApplicable, match="cussp reads 4CH cines; this patient has 2CH, SAX"):
        again.predict([subject["SAX"], subject["2CH"]])


def _nifti_patient(folder: Path, subject: dict) -> Path:
    """A patient folder of NIfTI cines named as UK Biobank names them."""
    import nibabel as nib

    folder.mkdir(parents=True)
    for view, name in (("2CH", "la_2ch"), ("4CH", "la_4ch")):
        c = subject[view]
        arr = np.transpose(c.pixels, (2, 1, 0))[:, :, None, :]  # (x, y, 1, t)
        img = nib.Nifti1Image(arr.astype(np.float32), np.diag([c.spacing[1], c.spacing[0], 6.0, 1.0]))
        img.header.set_xyzt_units("mm", "msec")
        img.header["pixdim"][4] = float(np.diff(c.frame_times).mean())
        nib.save(img, folder / f"{name}.nii.gz")
    return folder


@pytest.mark.parametrize("method", predictor.METHODS)
def test_each_method_names_its_report_section_itself(method):
    """A patient report learns a method's heading and picture from its Predictor, never from a list of its own."""
    cls = predictor.predictor_class(method)
    assert cls.method == method and f"notebook {predictor.study_class(method).number}" in cls.title
    assert cls.figure is not predictor.Predictor.figure  # every method draws what it saw


def test_the_segmenters_picture_shows_each_cines_ed_and_es_and_the_sax_volumes_over_the_cycle(subject):
    """Each cine's ED and ES frames, then (a SAX cycle) its LV and RV volume curves with the ED and ES marked."""
    cines = list(subject.values())
    p = segmenter()
    pred = p.predict(cines)
    fig = p.figure(pred, {c.cine_id: c for c in cines})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [t for c in cines for t in (f"{c.view} ED (frame {pred.detail['ed_es'][c.cine_id][0]})",
                                                 f"{c.view} ES (frame {pred.detail['ed_es'][c.cine_id][1]})",
                                                 *(["SAX volumes"] if c.view == "SAX" else []))]
    curve = fig.axes[titles.index("SAX volumes")]
    sax = subject["SAX"]
    lv = volume_curve(pred.detail["labels"][sax.cine_id], sax.spacing, LV)
    assert [ln.get_label() for ln in curve.get_lines()][:2] == ["LV", "RV"]
    assert np.allclose(curve.get_lines()[0].get_ydata(), lv) and curve.get_xlabel() == "time (ms)"
    assert {t.get_text() for t in curve.get_legend().get_texts()} == {"LV", "RV", "ED", "ES"}
    untimed = dataclasses.replace(sax, frame_times=np.full(sax.n_frames, np.nan))  # no frame times: frame numbers
    drawn = p.figure(pred, {c.cine_id: untimed if c is sax else c for c in cines})
    (curve,) = [ax for ax in drawn.axes if ax.get_title() == "SAX volumes"]
    assert curve.get_xlabel() == "frame" and np.allclose(curve.get_lines()[0].get_xdata(), np.arange(sax.n_frames))


def test_the_page_top_names_the_sections_a_phantom_only_warning_holds_for():
    phantom = dict(trained_on="phantom", profile="default")
    results = [dict(predictor=segmentation.Predictor, provenance=dict(phantom, real_training="ACDC, 70 patients")),
               dict(predictor=cussp.Predictor, provenance=phantom)]
    (top,) = page_banners(results, "default")
    assert top.startswith("Demonstration only") and top.endswith("Sections: CUSSP, notebook 04.")


def test_analyse_writes_the_report_and_says_what_is_not_available(tmp_path, subject):
    run = tmp_path / "run"
    segmenter().save(run / "predictors" / "segmentation.predictor")
    patient = _nifti_patient(tmp_path / "DOE^JANE_ID-998877", subject)
    cines, _ = read_patient(patient)
    assert sorted(c.view for c in cines) == ["2CH", "4CH"] and {c.subject for c in cines} == {"patient"}
    files = analyse(patient, run, tmp_path / "report", log=lambda *_: None)
    page = files["html"].read_text()
    assert "Demonstration only" in page and "No real-data check" in page
    assert page.count("not available: this run has no predictor") == 5  # the five methods this run lacks
    assert "LAVmax" in files["csv"].read_text()
    assert all("DOE" not in f.read_text() and "998877" not in f.read_text() for f in files.values())


def test_analyse_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    segmenter().save(run / "predictors" / "segmentation.predictor")
    (tmp_path / "empty").mkdir()
    for args, says in (([str(tmp_path / "missing")], "missing: not a folder"),
                       ([str(tmp_path / "empty")], "empty: no DICOM, NIfTI, UK Biobank zip or ACDC patient files")):
        assert main(["analyse", *args, "--run", str(run), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1
    with pytest.raises(AnalyseError, match="no predictors/"):
        analyse(tmp_path / "empty", tmp_path / "empty", tmp_path / "out")


def test_analyse_out_is_a_folder_of_its_own(tmp_path, subject, capsys):
    run = tmp_path / "run"
    segmenter().save(run / "predictors" / "segmentation.predictor")
    patient = _nifti_patient(tmp_path / "patient", subject)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    for out, says in (("/", "a system folder"), ("/etc/cmrlib", "a system folder"),
                      (str(patient), "lies in the patient's folder"), (str(patient / "r"), "lies in the patient's"),
                      (str(run / "predictors"), "lies in the run folder"),
                      (str(tmp_path / "notes"), "is not empty and holds no cmrlib report")):
        assert main(["analyse", str(patient), "--run", str(run), "--out", out]) == 2
        assert says in capsys.readouterr().err
    assert sorted(p.name for p in patient.iterdir()) == ["la_2ch.nii.gz", "la_4ch.nii.gz"]
    assert not (run / "predictors" / "report.html").exists() and not Path("/report.html").exists()
    out = tmp_path / "report"
    assert main(["analyse", str(patient), "--run", str(run), "--out", str(out)]) == 0
    assert main(["analyse", str(patient), "--run", str(run), "--out", str(out)]) == 2
    assert "holds a cmrlib report already (--force replaces it)" in capsys.readouterr().err
    assert main(["analyse", str(patient), "--run", str(run), "--out", str(out), "--force"]) == 0


def test_a_predictor_that_cannot_be_opened_is_named_and_fails_the_command(tmp_path, subject, capsys):
    run = tmp_path / "run"
    seg = segmenter().save(run / "predictors" / "segmentation.predictor")
    prep = dict(size=32, patch_mm=2.0, frames=10, window=5, crop_size=32, crop_mm=3.0)
    cussp.Predictor.from_model(CUSSPNet(10, 8, (16, 16), 8), "CUSSP-SIAM", prep, 0.5).save(
        run / "predictors" / "cussp.predictor")
    weights = run / "predictors" / "cussp.predictor" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])  # truncated in transit
    patient = _nifti_patient(tmp_path / "patient", subject)
    assert main(["analyse", str(patient), "--run", str(run), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "predictor cussp cannot be opened: cussp.predictor: weights.safetensors is damaged" in err
    assert "1 predictor(s) cannot be opened (cussp" in err and not (tmp_path / "a").exists()
    assert main(["analyse", str(patient), "--run", str(run), "--out", str(tmp_path / "b"), "--skip-broken"]) == 0
    page = (tmp_path / "b" / "report.html").read_text()
    assert "not available: its predictor cannot be opened (cussp.predictor: weights.safetensors is damaged" in page
    assert seg.is_dir()


@pytest.mark.parametrize("field, value", [("trained_on", [1]), ("real_check", {"a": 1}), ("intervals", 5),
                                          ("intervals", {"LVEF": {"half_width": "wide", "n": 3}}),
                                          ("model_checks", {"SAX": {"passed": "yes"}}), ("validation", [1])])
def test_a_provenance_field_of_the_wrong_type_is_refused_when_opened(tmp_path, field, value):
    """Not when a report is half written: the file is named with the field and the problem."""
    import json

    path = tmp_path / "segmentation.predictor"
    segmentation.Predictor({"SAX": unet11(6, width=0.0625).eval()}, provenance=dict(trained_on="acdc")).save(path)
    doc = json.loads((path / "predictor.json").read_text())
    doc["body"]["provenance"][field] = value
    (path / "predictor.json").write_text(json.dumps(doc))
    with pytest.raises(predictor.PredictorError, match=f"segmentation.predictor: provenance {field}"):
        predictor.load(path)


def test_the_report_withholds_the_es_numbers_of_a_segmentation_whose_es_cavity_outgrows_ed(subject):
    """The segmenter measures how far its LV at ES outgrows its ED extent; the report's check withholds the numbers
    read at ES when that is beyond twice the manual masks' largest (`plausible.ES_OVERSHOOT`), and not the others."""
    from cmrlib.analyse import Body, check_results
    from cmrlib.measure import es_overshoot

    sax = subject["SAX"]
    out = segmenter().predict([sax])
    lab, (ed, es) = out.detail["labels"][sax.cine_id], out.detail["ed_es"][sax.cine_id]
    assert out.detail["es_overshoot"] == es_overshoot(lab[ed], lab[es], sax.spacing)
    body = Body()
    out.add("LVESV", 40.0, "mL", sax.cine_id)  # an untrained network's cavity may vanish at ES: give it one
    out.detail["es_overshoot"] = 0.05 * 40.0  # within the rule (at most 6 % of LVESV)
    before = check_results([dict(result=out, provenance={})], [sax], body)[0].set_index("measure")
    out.detail["es_overshoot"] = 40.0  # all of the ES cavity beyond ED
    after = check_results([dict(result=out, provenance={})], [sax], body)[0].set_index("measure")
    grown = after.flag.str.contains("outgrows its ED extent")
    assert not before.flag.str.contains("outgrows").any()
    measured = after.index[np.isfinite(after.value)]  # an untrained network's EF may not be measurable
    assert set(after.index[grown]) == {m for m in measured if plausible.reads_es(m)} >= {"LVESV", "LVSV"}
    assert (after.tier[grown] == "withheld").all() and not grown[["LVEDV", "LVM"]].any()
