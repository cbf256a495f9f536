"""A shared run folder or cohort never reaches outside itself, never goes stale and never leaks a name: links that
lead out, FIFOs, huge or mistyped run files, killed and changed cohort batches, impossible body sizes, spreadsheet
formulas and hostile model files, each on small synthetic files. Every case is one line naming the file or option
and the problem, and nothing is written or deleted outside the output or run folder."""
from __future__ import annotations

import json
import os
import re
import shutil
import time

import pandas as pd
import pytest
import torch

from cmrlib import modelfile, predictor, results
from cmrlib.analyse import AnalyseError, analyse
from cmrlib.analyse_batch import analyse_cohort
from cmrlib.analysis import report
from cmrlib.cli import main
from cmrlib.learn import record_settings, reusable
from cmrlib.methods import segmentation
from cmrlib.models import unet11
from cmrlib.phantom import simulate_subject
from cmrlib.runfiles import RunFileError
from cmrlib.utils import spreadsheet_safe
from test_analysis import fake_run
from test_report_checks import SMALL, nifti_patient


@pytest.fixture(scope="module")
def subject():
    return simulate_subject(1, seed=0, config=SMALL, views=("2CH", "4CH"))


def tree(folder) -> dict:
    """Every file under a folder with its bytes (what must stay as it was)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- links in a received run folder


@pytest.mark.parametrize("link", ["predictors", "01", "01/models", "table1", "labels"])
def test_a_link_that_leads_out_of_a_run_is_refused_before_anything_is_written(tmp_path, link):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "segmentation.predictor").mkdir(parents=True)
    (elsewhere / "segmentation.predictor" / "keep.txt").write_text("a colleague's file")
    (elsewhere / "seg_sax.model").mkdir()
    before = tree(elsewhere)
    run = tmp_path / "run"
    (run / link).parent.mkdir(parents=True, exist_ok=True)
    (run / link).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(RunFileError, match=f"^{link}: a link that leads outside the run folder"):
        results.setup("01", run, tmp_path / "figures", 0)
    assert tree(elsewhere) == before


def test_a_file_a_notebook_writes_is_never_a_link(tmp_path):
    run = tmp_path / "run"
    nb = results.setup("02", run, tmp_path / "figures", 0)
    secret = tmp_path / "secret.csv"
    secret.write_text("private\n")
    (nb.out / "training.csv").symlink_to(secret)
    with pytest.raises(RunFileError, match="02/training.csv: a link that leads outside the run folder"):
        nb.table(pd.DataFrame({"a": [1]}), "training")
    assert secret.read_text() == "private\n"
    (nb.out / "training.csv").unlink()
    (nb.out / "mine.csv").write_text("a\n1\n")
    (nb.out / "training.csv").symlink_to(nb.out / "mine.csv")  # a link inside the run: never written through
    with pytest.raises(RunFileError, match="02/training.csv: a link where the run writes"):
        nb.table(pd.DataFrame({"a": [2]}), "training")
    assert (nb.out / "mine.csv").read_text() == "a\n1\n"


def test_replacing_a_model_never_deletes_through_a_link(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "seg.model"
    elsewhere.mkdir(parents=True)
    (elsewhere / "weights.safetensors").write_text("someone's")
    link = tmp_path / "run" / "seg.model"
    link.parent.mkdir()
    link.symlink_to(elsewhere, target_is_directory=True)
    modelfile.save(link, unet11(6, width=0.0625))
    assert (elsewhere / "weights.safetensors").read_text() == "someone's" and link.is_dir() and not link.is_symlink()


# ---------------------------------------------------------------- what the report reads


def test_the_report_reads_only_regular_files_of_the_run_of_bounded_size(tmp_path):
    run = fake_run(tmp_path / "a")
    private = tmp_path / "private.csv"
    private.write_text("patient,diagnosis\nDOE^JANE,secret\n")
    table = run / "02" / "headline_afd.csv"
    table.unlink()
    table.symlink_to(private)
    with pytest.raises(report.ReportError, match="headline_afd.csv: a link that leads outside the run folder"):
        report.report(run)
    table.unlink()
    os.mkfifo(table)
    t0 = time.perf_counter()
    with pytest.raises(report.ReportError, match="02/headline_afd.csv: not a regular file"):
        report.report(run)  # a FIFO would block a reader forever
    assert time.perf_counter() - t0 < 5
    record = run / "run.json"
    record.unlink()
    record.symlink_to("/dev/zero")
    with pytest.raises(report.ReportError, match="run.json: a link that leads outside"):
        report.report(run)


@pytest.mark.parametrize("field, value, message", [
    ("profile", "smoke`; rm -rf ~ #", "its profile is not a profile's name"),
    ("profile", ["smoke"], "field 'profile' is not a str"),
    ("notebooks", {"02": 1}, "field 'notebooks' is not a list"),
    ("wall_s", "60", "field 'wall_s' is not a number"),
])
def test_a_run_record_of_the_wrong_shape_is_one_line(tmp_path, field, value, message, capsys):
    run = fake_run(tmp_path)
    rec = json.loads((run / "run.json").read_text())
    if field == "wall_s":
        rec["notebooks"][0]["wall_s"] = value
    else:
        rec[field] = value
    (run / "run.json").write_text(json.dumps(rec))
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_the_report_shows_only_what_finished_notebooks_wrote(tmp_path):
    run = fake_run(tmp_path, also=())
    rec = json.loads((run / "run.json").read_text())
    rec["notebooks"][0]["status"] = "running"  # killed: its folder holds an older run's or half its tables
    (run / "run.json").write_text(json.dumps(rec))
    text = report.report(run)
    assert "Not finished in this run, their tables not shown: 02 (running)" in text
    assert "TempReg-Net" not in text and "Targets" not in text


# ---------------------------------------------------------------- cohort batches


def cohort(folder, subject, names=("A_1", "B_2", "C_3")):
    for name in names:
        nifti_patient(folder / name, subject)
    return folder


def test_a_killed_batch_resumes_and_ends_as_an_uninterrupted_one(tmp_path, subject, broken_run, monkeypatch):
    import cmrlib.analyse_batch as batch

    folder = cohort(tmp_path / "cohort", subject)
    whole = analyse_cohort(folder, broken_run, tmp_path / "whole", log=lambda *_: None, progress=False)
    real, calls = batch.report_patient, []

    def killed(*a, **k):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user's ^C (or the machine's end) after two subjects
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(batch, "report_patient", killed)
    with pytest.raises(KeyboardInterrupt):
        analyse_cohort(folder, broken_run, tmp_path / "part", log=lambda *_: None, progress=False)
    monkeypatch.setattr(batch, "report_patient", real)
    assert json.loads((tmp_path / "part" / "batch.json").read_text())["status"] == "running"
    done = analyse_cohort(folder, broken_run, tmp_path / "part", log=lambda *_: None, progress=False)
    assert done["csv"].read_text() == whole["csv"].read_text()
    assert json.loads(done["json"].read_text())["status"] == "complete"


def test_a_subject_whose_files_changed_is_reported_again(tmp_path, subject, broken_run):
    folder = cohort(tmp_path / "cohort", subject)
    out = tmp_path / "out"
    analyse_cohort(folder, broken_run, out, log=lambda *_: None, progress=False)
    first = {n: json.loads((out / n / "report.json").read_text())["made_from"] for n in ("S001", "S002")}
    other = simulate_subject(5, seed=0, config=SMALL, views=("2CH", "4CH"))  # another patient's files
    shutil.rmtree(folder / "B_2")
    nifti_patient(folder / "B_2", other)
    analyse_cohort(folder, broken_run, out, log=lambda *_: None, progress=False)
    again = {n: json.loads((out / n / "report.json").read_text())["made_from"] for n in ("S001", "S002")}
    assert again["S001"] == first["S001"] and again["S002"] != first["S002"]


def test_force_takes_over_a_folder_of_a_batch_killed_before_its_record(tmp_path, subject, broken_run):
    folder = cohort(tmp_path / "cohort", subject, names=("A_1", "B_2"))
    out = tmp_path / "out"
    (out / "S001").mkdir(parents=True)
    with pytest.raises(AnalyseError, match="holds no cmrlib batch.*--force takes over"):
        analyse_cohort(folder, broken_run, out, log=lambda *_: None, progress=False)
    analyse_cohort(folder, broken_run, out, log=lambda *_: None, progress=False, force=True)
    (out / "notes.txt").write_text("mine")
    (out / "batch.json").unlink()
    with pytest.raises(AnalyseError, match="holds no cmrlib batch"):
        analyse_cohort(folder, broken_run, out, log=lambda *_: None, progress=False, force=True)


def test_a_failed_subject_is_named_by_its_pseudonym_and_masked_paths(tmp_path, subject, broken_run):
    folder = cohort(tmp_path / "cohort", subject, names=("A_1", "DOE_JANE_1234567"))
    bad = folder / "DOE_JANE_1234567" / "la_4ch.nii.gz"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    files = analyse_cohort(folder, broken_run, tmp_path / "out", log=lambda *_: None, progress=False)
    summary = pd.read_csv(files["csv"])
    status = summary.set_index("subject").status["S002"]
    assert status.startswith("failed: CorruptFileError: …") and ".nii.gz" in status
    text = "".join(p.read_text(errors="ignore") for p in (tmp_path / "out").rglob("*") if p.suffix in (".csv", ".html",
                                                                                                        ".json"))
    assert not [w for w in ("DOE", "JANE", "1234567", "la_4ch") if w in text]


# ---------------------------------------------------------------- one patient's options and outputs


@pytest.mark.parametrize("args, message", [
    (["--height", "30", "--weight", "60"], "--height 30 cm: give a person's"),
    (["--height", "170", "--weight", "0.5"], "--weight 0.5 kg: give a person's"),
    (["--height", "0", "--weight", "60"], "--height 0 cm"),
    (["--height", "250", "--weight", "2"], "a BMI of 0.3 kg/m2, no person's"),
])
def test_impossible_body_sizes_are_refused_before_anything_runs(tmp_path, subject, broken_run, args, message,
                                                                 capsys):
    patient = nifti_patient(tmp_path / "p", subject)
    assert main(["analyse", str(patient), "--run", str(broken_run), "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("out", ["/media", "/mnt", "/root", "/home"])
def test_a_mount_or_home_root_is_never_a_report_folder(tmp_path, subject, broken_run, out):
    with pytest.raises(AnalyseError, match="a system folder"):
        analyse(nifti_patient(tmp_path / "p", subject), broken_run, out, log=lambda *_: None)


def test_a_cell_a_spreadsheet_would_run_is_written_as_text(tmp_path, subject):
    run = tmp_path / "run"
    nets = {"SAX": unet11(6, width=0.0625).eval(), "LAX": unet11(6, width=0.0625).eval()}
    segmentation.Predictor(nets, provenance=dict(trained_on="phantom"), model='=HYPERLINK("http://x","y")').save(
        run / "predictors" / "segmentation.predictor")
    (run / "run.json").write_text(json.dumps(dict(profile="smoke")))
    files = analyse(nifti_patient(tmp_path / "p", subject), run, tmp_path / "r", log=lambda *_: None)
    models = set(pd.read_csv(files["csv"])["model"])
    assert models == {"'=HYPERLINK(\"http://x\",\"y\")"}
    safe = spreadsheet_safe(pd.DataFrame({"a": ["-1.5", "@SUM(A1)", "+x", "ok", "-"]}))
    assert safe.a.tolist() == ["-1.5", "'@SUM(A1)", "'+x", "ok", "'-"]


# ---------------------------------------------------------------- hostile model files


@pytest.fixture
def saved(tmp_path):
    folder = tmp_path / "predictors" / "segmentation.predictor"
    torch.manual_seed(0)
    segmentation.Predictor({"SAX": unet11(6, width=0.0625).eval()}).save(folder)
    return folder


def edit(folder, change):
    doc = json.loads((folder / "predictor.json").read_text())
    change(doc["body"])
    (folder / "predictor.json").write_text(json.dumps(doc))


def test_hostile_constructor_arguments_cost_nothing_before_refusal(saved):
    edit(saved, lambda b: b["nets"]["SAX"]["args"].update(width=400.0))  # a network of some 10^11 weights
    t0 = time.perf_counter()
    with pytest.raises(predictor.PredictorError, match="shape mismatch"):
        predictor.load(saved)
    assert time.perf_counter() - t0 < 5


def test_a_broken_predictor_others_need_is_read_once(saved, monkeypatch):
    edit(saved, lambda b: b["nets"]["SAX"]["args"].update(width=400.0))
    calls = []
    real = modelfile.read
    monkeypatch.setattr(modelfile, "read", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    loaded = {}
    for _ in range(3):  # as run_predictors does for each predictor that needs the segmenter
        with pytest.raises(predictor.PredictorError):
            predictor.load(saved, loaded)
    assert len(calls) == 1


def test_predictors_that_need_each_other_are_refused(saved):
    edit(saved, lambda b: b.update(needs={"segmenter": "segmentation"}))
    with pytest.raises(predictor.PredictorError, match="need each other"):
        predictor.load(saved)


def test_a_predictor_in_another_methods_place_is_refused(saved):
    moved = saved.parent / "cussp.predictor"
    shutil.move(saved, moved)
    with pytest.raises(predictor.PredictorError, match="cussp.predictor: holds the segmentation predictor"):
        predictor.load(moved)


@pytest.mark.parametrize("name", ["cmrlib.__main__:main", "cmrlib.models.unet:_private", "cmrlib._x:unet11",
                                  "cmrlib.cli:main"])
def test_only_the_registered_factories_are_ever_imported_or_called(saved, name, monkeypatch):
    ran = []
    monkeypatch.setattr("cmrlib.cli.main", lambda *a: ran.append(a))
    edit(saved, lambda b: b["nets"]["SAX"].update({"$module": name}))
    with pytest.raises(predictor.PredictorError, match="not a cmrlib name|unknown architecture"):
        predictor.load(saved)
    assert not ran


def _moved(saved, method):
    """The segmentation predictor's folder presented as another method's."""
    edit(saved, lambda b: b.update(method=method))
    return shutil.move(saved, saved.parent / predictor.file_name(method))


def test_a_predictor_whose_nets_contradict_its_role_is_refused_when_it_opens(saved):
    edit(saved, lambda b: b["nets"].update(ECG=b["nets"].pop("SAX")))
    with pytest.raises(predictor.PredictorError, match="a net named 'ECG' has no place in a segmentation predictor"):
        predictor.load(saved)
    segmentation.Predictor({}).save(saved)
    with pytest.raises(predictor.PredictorError, match=re.escape("segmentation.predictor: it holds no SAX|LAX net")):
        predictor.load(saved)


@pytest.mark.parametrize("method, message", [
    ("mvnet", "a net named 'SAX' has no place in a mvnet predictor"),
    ("heartmae", "a net named 'SAX' has no place in a heartmae predictor"),
    ("sslhf", "a net named 'SAX' has no place in a sslhf predictor"),
])
def test_a_segmenter_relabelled_as_another_method_is_refused_when_it_opens(saved, method, message):
    with pytest.raises(predictor.PredictorError, match=f"{method}.predictor: {message}"):
        predictor.load(_moved(saved, method))


def test_a_net_of_another_class_or_settings_missing_are_refused_before_any_patient(saved, tmp_path, subject):
    from cmrlib.methods import cussp, mvnet
    from cmrlib.models.cussp import CUSSPNet

    folder = saved.parent
    mvnet.Predictor({"2CH": unet11(6, width=0.0625)}, {"velocity_window": 5}).save(folder / "mvnet.predictor")
    with pytest.raises(predictor.PredictorError, match="mvnet.predictor: its '2CH' net is a UNet11, not a MVnet"):
        predictor.load(folder / "mvnet.predictor")
    prep = dict(size=32, patch_mm=2.0, frames=10, window=5, crop_size=32, crop_mm=3.0)
    p = cussp.Predictor.from_model(CUSSPNet(10, 8, (16, 16), 8), "CUSSP-SIAM", prep, 0.5)
    del p.prep["threshold"]
    p.needs["segmenter"] = "edes"
    p.save(folder / "cussp.predictor")
    with pytest.raises(predictor.PredictorError, match="cussp.predictor: its settings lack threshold"):
        predictor.load(folder / "cussp.predictor")
    p.prep["threshold"] = 0.5
    p.save(folder / "cussp.predictor")
    with pytest.raises(predictor.PredictorError, match="must name its segmenter .the segmentation predictor., not "
                                                       "'edes'"):
        predictor.load(folder / "cussp.predictor")
    patient = nifti_patient(tmp_path / "patient", subject)
    assert main(["analyse", str(patient), "--run", str(folder.parent), "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


def test_a_key_given_twice_is_refused(saved):
    text = (saved / "predictor.json").read_text()
    assert '"provenance": {}' in text
    text = text.replace('"provenance": {}', '"provenance": {"trained_on": "phantom", "trained_on": "real"}', 1)
    (saved / "predictor.json").write_text(text)
    with pytest.raises(predictor.PredictorError, match="'trained_on' is given twice"):
        predictor.load(saved)


def test_weights_of_another_dtype_are_refused_not_cast(saved):
    from safetensors.torch import load_file, save_file

    w = load_file(str(saved / "weights.safetensors"))
    key = next(k for k, t in w.items() if t.is_floating_point())
    w[key] = w[key].to(torch.float16)
    save_file(w, str(saved / "weights.safetensors"))
    with pytest.raises(predictor.PredictorError, match="dtype mismatch"):
        predictor.load(saved)


def test_a_fifo_where_settings_belong_is_never_opened(tmp_path):
    model = tmp_path / "seg.model"
    modelfile.save(model, unet11(6, width=0.0625))
    record_settings(model, dict(a=1))
    assert reusable(model, dict(a=1))
    settings = model.with_suffix(".settings.json")
    settings.unlink()
    os.mkfifo(settings)
    t0 = time.perf_counter()
    assert not reusable(model, dict(a=1)) and time.perf_counter() - t0 < 5


# ---------------------------------------------------------------- every place a run, a batch, a validation writes


def _tiny_plan(tmp_path, figures=None):
    """A plan of one trivial notebook into tmp_path / 'run' (the places it writes come from `write_places`)."""
    import nbformat

    from cmrlib import runner

    nbs = tmp_path / "nbs"
    nbs.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(seed)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbs / "00_x.ipynb")
    (tmp_path / "p.yaml").write_text("common: {}\n")
    return runner.plan(str(tmp_path / "p.yaml"), out=tmp_path / "run", figures=figures, notebooks=nbs)


@pytest.mark.parametrize("where", range(4))
def test_a_link_at_any_place_the_run_writes_is_refused_before_anything_is_written(tmp_path, where):
    """Each place `runner.write_places` names (run.json, notebooks/, each executed notebook, the figure folder),
    planted with a link to a colleague's folder or file: one line, nothing written there."""
    from cmrlib import runner

    plan = _tiny_plan(tmp_path)
    places = runner.write_places(plan)
    assert len(places) == 4
    _, place = places[where]
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "keep.txt").write_text("a colleague's file")
    place.parent.mkdir(parents=True, exist_ok=True)
    target = victim / "sub" if place.suffix not in (".json", ".ipynb") else victim / "sub" / "keep.txt"
    place.symlink_to(target, target_is_directory=target.is_dir())
    before = tree(victim)
    with pytest.raises(RunFileError, match="link"):
        runner.execute(plan, log=lambda *_: None)
    assert tree(victim) == before


@pytest.mark.parametrize("planted", ["S001", "S002", "summary.csv", "index.html"])
def test_a_link_where_a_batch_writes_is_refused_and_its_target_untouched(tmp_path, subject, broken_run, planted):
    folder = cohort(tmp_path / "cohort", subject)
    out = tmp_path / "out"
    analyse_cohort(folder, broken_run, out, log=lambda *_: None, progress=False)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("a colleague's file")
    before = tree(victim)
    p = out / planted
    shutil.rmtree(p) if p.is_dir() else p.unlink()
    p.symlink_to(victim if planted.startswith("S") else victim / "keep.txt", target_is_directory=planted[0] == "S")
    with pytest.raises(AnalyseError, match=f"{planted}: a link"):
        analyse_cohort(folder, broken_run, out, log=lambda *_: None, progress=False, force=True)
    assert tree(victim) == before


def test_validate_builds_its_run_from_checked_reads_only(tmp_path, monkeypatch):
    """The source run's run.json a link to a private file: an error, never a silent unknown profile; a link, a FIFO
    or a stray file in predictors/ never travels; no file of the validated run is a hard link into the source."""
    import cmrlib.validate as v

    run = tmp_path / "run"
    segmentation.Predictor({"SAX": unet11(6, width=0.0625).eval()}).save(run / "predictors" / "segmentation.predictor")
    private = tmp_path / "private.txt"
    private.write_text("someone's notes")
    (run / "run.json").symlink_to(private)
    with pytest.raises(AnalyseError, match="run.json: a link"):
        v.run_record(run)
    (run / "run.json").unlink()
    (run / "run.json").write_text(json.dumps(dict(profile="default")))
    (run / "predictors" / "notes.txt").symlink_to(private)
    os.mkfifo(run / "predictors" / "pipe")
    preds, _, _ = predictor.run_predictors(run)
    out = tmp_path / "validated"
    v._copy_run(preds, v.run_record(run), out)
    written = [p for p in out.rglob("*")]
    assert sorted(p.name for p in (out / "predictors").iterdir()) == ["segmentation.predictor"]
    assert all(p.is_dir() or (p.is_file() and not p.is_symlink() and p.stat().st_nlink == 1) for p in written)
    assert json.loads((out / "run.json").read_text()) == dict(profile="default")
    few = tmp_path / "few"
    for i in range(3):
        (few / f"p{i}").mkdir(parents=True)
    monkeypatch.setattr(v, "measure_cohort", lambda *a, **k: pytest.fail("measured before counting"))
    with pytest.raises(AnalyseError, match="3 patient folder"):
        v.validate(few, run, tmp_path / "o", log=lambda *_: None, progress=False)


@pytest.mark.parametrize("argv", [["run", "--only", "09", "--out", "a\0b"], ["run", "--only", "09", "--out", "x" * 300],
                                  ["ingest", "acdc", ".", "--out", "y" * 300],
                                  ["analyse", "p\0", "--run", "r", "--out", "o"]])
def test_a_path_the_file_system_cannot_take_is_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("NUL byte" in err or "longer than the file system allows" in err)


@pytest.mark.parametrize("loop", ["itself", "the cohort"])
def test_a_link_that_loops_in_a_cohort_is_a_failed_subject_never_left_out(tmp_path, subject, broken_run, loop):
    from cmrlib.io import ingest

    folder = cohort(tmp_path / "cohort", subject, names=("A_1", "B_2"))
    link = folder / "C_3"
    link.symlink_to(link if loop == "itself" else folder, target_is_directory=True)
    files = analyse_cohort(folder, broken_run, tmp_path / "out", log=lambda *_: None, progress=False)
    summary = pd.read_csv(files["csv"])
    assert len(summary) == 3 and summary.status[2].startswith("failed") and "link" in summary.status[2]
    store = ingest("nifti", folder, tmp_path / "store", progress=False)
    bad = store.report()["bad"]
    assert len(bad) == 1 and "link" in bad[0]["message"]
