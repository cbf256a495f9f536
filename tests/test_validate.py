"""`cmrlib validate`: a site's contoured patients against a run's segmenter give agreement tables and a new run
folder whose segmenter carries intervals calibrated on them; the original run is untouched and the report says
which calibration it used."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

from cmrlib.analyse import AnalyseError, analyse, read_patient
from cmrlib.cli import main
from cmrlib.data import FrameGeometry
from cmrlib.labels import SOURCE_MAPS
from cmrlib.methods import segmentation
from cmrlib.models import unet11
from cmrlib.phantom import simulate_subject
from cmrlib.predictor import Prediction, run_predictors
from cmrlib.validate import contoured_frames, validate

N = 12
NOISE = np.array([-6.0, 5.0, -4.0, 3.0, -2.0, 1.0, 0.5, -1.5, 2.5, -3.5, 4.5, -5.5])  # LVEF auto - ref, points


def _sax_folder(folder, subject):
    """A patient folder holding one NIfTI SAX cine named as UK Biobank names it."""
    import nibabel as nib

    folder.mkdir(parents=True)
    c = subject["SAX"]
    arr = np.transpose(c.pixels, (3, 2, 1, 0)).astype(np.float32)
    img = nib.Nifti1Image(arr, np.diag([c.spacing[2], c.spacing[1], c.spacing[0], 1.0]))
    img.header.set_xyzt_units("mm", "msec")
    img.header["pixdim"][4] = float(np.diff(c.frame_times).mean())
    nib.save(img, folder / "sa.nii.gz")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A run with a (tiny) segmentation predictor, a site of 12 patients and their reference CSV; the segmenter's
    numbers are the reference plus known errors."""
    subject = simulate_subject(1, seed=0, config=dict(n_frames=6, matrix=48, pixel_mm=3.0), views=("SAX",))
    names = [f"DOE_{i:07d}" for i in range(N)]
    for name in names:
        _sax_folder(tmp_path / "site" / name, subject)
    ref = pd.DataFrame(dict(patient=names, LVEDV=150.0 + np.arange(N), LVESV=70.0 + np.arange(N) / 2, LVEF=40.0 + 2 * np.arange(N)))
    ref.to_csv(tmp_path / "reference.csv", index=False)
    order = iter(range(10 ** 6))

    def predict(self, cines):
        i = next(order) % N
        out = Prediction("segmentation", "m")
        out.add("LVEDV", 150.0 + i + 2 * NOISE[i], "mL", "patient_SAX")
        out.add("LVESV", 70.0 + i / 2 + NOISE[i], "mL", "patient_SAX")
        out.add("LVEF", 40.0 + 2 * i + NOISE[i], "%", "patient_SAX")
        return out

    monkeypatch.setattr(segmentation.Predictor, "predict", predict)
    torch.manual_seed(0)
    run = tmp_path / "run"
    prov = dict(trained_on="acdc", profile="default", real_check="ACDC held-out",
                intervals={"LVEF": dict(half_width=2.0, n=30, level=0.9, coverage=0.9)})
    segmentation.Predictor({"SAX": unet11(6, width=0.0625).eval()}, provenance=prov).save(
        run / "predictors" / "segmentation.predictor")
    (run / "run.json").write_text(json.dumps(dict(profile="default")))
    return tmp_path, run


def test_a_site_recalibrates_the_intervals_into_a_new_run_and_leaves_the_run_untouched(site):
    tmp, run = site
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    files = validate(tmp / "site", run, tmp / "validated", tmp / "reference.csv", log=lambda *_: None,
                     progress=False)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # the run untouched
    t = pd.read_csv(files["intervals"], index_col=0)
    assert t.loc["LVEF", "n"] == N and t.loc["LVEF", "half_width"] == 6.0  # ceil(13 * 0.9) = 12th of |errors|
    assert t.loc["LVEF", "run_half_width"] == 2.0 and t.loc["LVEF", "run_coverage"] == pytest.approx(4 / 12)
    agree = pd.read_csv(files["agreement"], index_col=0)
    assert agree.loc["LVEF", "bias"] == pytest.approx(NOISE.mean()) and agree.loc["LVEF", "n"] == N
    got = json.loads((files["run"] / "predictors" / "segmentation.predictor" / "predictor.json").read_text())
    assert "site patients" in json.dumps(got) and files["figure"].stat().st_size > 0
    written = [p.read_bytes() for p in (tmp / "validated").rglob("*") if p.is_file()]
    assert files["run"].is_relative_to(tmp / "validated") and len(written) > 4
    assert not [b for b in written if b"DOE" in b]  # the site's folder names never leave it, in any file it writes
    report = analyse(tmp / "site" / "DOE_0000000", files["run"], tmp / "report", log=lambda *_: None)
    assert "calibrated on 12 patients" in report["html"].read_text()


def test_validate_refuses_too_few_patients_and_a_folder_in_the_run(site):
    tmp, run = site
    with pytest.raises(AnalyseError, match="lies in the run folder"):
        validate(tmp / "site", run, run / "validated", tmp / "reference.csv", log=lambda *_: None, progress=False)
    few = tmp / "few"
    few.mkdir()
    for name in sorted(p.name for p in (tmp / "site").iterdir())[:5]:
        (few / name).symlink_to(tmp / "site" / name, target_is_directory=True)
    assert main(["validate", str(few), "--run", str(run), "--out", str(tmp / "v"), "--reference",
                 str(tmp / "reference.csv")]) == 2


ACDC_CODE = {canon: code for code, canon in SOURCE_MAPS["acdc"].items()}  # canonical label -> ACDC's


def _acdc_folder(folder, c, k: int):
    """An ACDC-layout patient folder (Info.cfg, ED and ES frames with their masks) from a phantom SAX cine."""
    import nibabel as nib

    folder.mkdir(parents=True)
    pid = f"patient{k:03d}"
    (folder / "Info.cfg").write_text(f"ED: {c.ed + 1}\nES: {c.es + 1}\nGroup: NOR\nHeight: 175\nWeight: 75\n"
                                     f"NbFrame: {c.n_frames}\n")
    zooms = np.diag([c.spacing[2], c.spacing[1], c.spacing[0], 1.0])
    to_acdc = np.vectorize(lambda v: ACDC_CODE.get(int(v), 0), otypes=[np.uint8])
    for t in (c.ed, c.es):
        nib.save(nib.Nifti1Image(np.transpose(c.pixels[t], (2, 1, 0)).astype(np.float32), zooms),
                 folder / f"{pid}_frame{t + 1:02d}.nii.gz")
        nib.save(nib.Nifti1Image(np.transpose(to_acdc(c.labels[t]), (2, 1, 0)), zooms),
                 folder / f"{pid}_frame{t + 1:02d}_gt.nii.gz")


@pytest.fixture
def contoured(tmp_path):
    """A site of 10 patients in ACDC's layout (ED and ES masks) and a run with a tiny SAX segmenter at 32 px."""
    for k in range(10):
        c = simulate_subject(k, seed=0, config=dict(n_frames=6, matrix=48, pixel_mm=3.0), views=("SAX",))["SAX"]
        _acdc_folder(tmp_path / "site" / f"patient{k + 1:03d}", c, k + 1)
    torch.manual_seed(0)
    net = unet11(6, width=0.0625).eval()
    net.geometry = FrameGeometry(size=32, spacing=4.5)
    run = tmp_path / "run"
    prov = dict(trained_on="acdc", profile="default", real_check="ACDC held-out",
                intervals={"LVEF": dict(half_width=2.0, n=30, level=0.9, coverage=0.9)})
    segmentation.Predictor({"SAX": net}, provenance=prov).save(run / "predictors" / "segmentation.predictor")
    (run / "run.json").write_text(json.dumps(dict(profile="default")))
    return tmp_path, run


def test_fine_tuning_is_scored_out_of_fold_and_ships_the_model_tuned_on_every_patient(contoured, monkeypatch):
    from cmrlib.methods.segmentation import learner

    tmp, run = contoured
    seen, real = [], learner.fine_tune
    key = lambda c: hashlib.sha1(c.pixels.tobytes()).hexdigest()
    folders = sorted((tmp / "site").iterdir())
    subject_of = {key(contoured_frames(read_patient(f)[0])): f"S{i:03d}" for i, f in enumerate(folders, start=1)}

    def recording(model, cines, *a, **kw):  # which patients each fine-tune learnt from
        seen.append({subject_of[key(c)] for c in cines})
        return real(model, cines, *a, **kw)

    monkeypatch.setattr(learner, "fine_tune", recording)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    files = validate(tmp / "site", run, tmp / "tuned", log=lambda *_: None, progress=False,
                     fine_tune=dict(folds=2, epochs=1))
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    oof = pd.read_csv(files["measures_fine_tuned"])
    assert len(seen) == 3 and len(seen[-1]) == 10  # two folds, then every patient for the shipped model
    for k, learnt in enumerate(seen[:2]):  # a patient is measured only by the model that did not learn from them
        assert set(oof[oof.fold == k].subject) == set(subject_of.values()) - learnt
    t = pd.read_csv(files["fine_tune"], index_col=0)
    assert t.loc["RVEDV", "n"] == 10 and {"mae_run", "mae_fine_tuned", "ci_low", "ci_high"} <= set(t.columns)
    shipped = run_predictors(files["run"])[0]["segmentation"]
    original = run_predictors(run)[0]["segmentation"]
    assert shipped.provenance["validation"]["fine_tuned"]["patients"] == 10
    assert not all(torch.equal(a, b) for a, b in zip(shipped.nets["SAX"].state_dict().values(),
                                                     original.nets["SAX"].state_dict().values()))
    assert shipped.nets["SAX"].geometry == original.nets["SAX"].geometry
    qc = pd.read_csv(files["qc"], index_col=0)  # the report's entropy check now measured against the site
    assert len(qc) and shipped.prep["uncertainty_p95"]["SAX"] == pytest.approx(qc.site_p95.to_dict(), abs=1e-5)
    report = analyse(tmp / "site" / "patient001", files["run"], tmp / "report", log=lambda *_: None)
    assert "fine-tuned on 10 of them" in report["html"].read_text()


def test_fine_tuning_needs_masks(site):
    tmp, run = site
    with pytest.raises(AnalyseError, match="--fine-tune needs SAX masks"):
        validate(tmp / "site", run, tmp / "v", tmp / "reference.csv", log=lambda *_: None, progress=False,
                 fine_tune=True)
    assert not (tmp / "v").exists()


def test_the_entropy_yardstick_is_the_sites_95th_percentile_scored_leaving_each_patient_out():
    from cmrlib.validate import qc_table

    e = np.linspace(0.10, 0.29, 20)  # 20 patients' mean LV entropy
    t = qc_table(pd.DataFrame({"entropy_LV": e, "entropy_RV": [np.nan] * 20}), {"LV": 0.15})
    assert list(t.index) == ["LV"]  # RV has no entropies: no yardstick
    assert t.loc["LV", "site_p95"] == pytest.approx(np.percentile(e, 95))
    assert t.loc["LV", "run_flags"] == pytest.approx(14 / 20)  # the run's yardstick flags most of this site
    assert t.loc["LV", "site_flags"] == pytest.approx(2 / 20)  # left out, the two largest are above the others' p95


def test_a_runs_interval_in_proportion_to_the_entropy_is_scored_on_the_site_with_each_patients_entropy():
    """`cmrlib validate` holds the run's interval against the site in the run's own scale: a width in proportion to
    the segmenter's ED/ES entropy covers a patient where their error is within it times their entropy; a patient
    without an entropy has no such interval (not covered); one width ignores the entropy."""
    from cmrlib.validate import interval_table

    entropy = np.full(N, 0.2)
    entropy[5] = np.nan  # NOISE[5] = 1 point: within 5 points, but no entropy to scale by
    t = pd.DataFrame({"LVEF_auto": 40.0 + NOISE, "LVEF_ref": 40.0, "edes_entropy_LV": entropy})
    pairs = {"LVEF": ("LVEF_auto", "LVEF_ref")}
    scaled = interval_table(t, pairs, {"LVEF": dict(half_width=25.0, scale="entropy")}).loc["LVEF"]
    assert scaled.run_scale == "entropy" and scaled.run_coverage == pytest.approx(9 / 12)  # 25 x 0.2 = 5 points
    plain = interval_table(t, pairs, {"LVEF": dict(half_width=5.0)}).loc["LVEF"]
    assert plain.run_scale == "none" and plain.run_coverage == pytest.approx(10 / 12)
