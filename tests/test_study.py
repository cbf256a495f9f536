"""The Studies: each method's experiment declares its parameters once in the library, and its notebook's
parameters cell holds the same names and defaults; `cmrlib fit` reads them from the profiles, never from a
notebook file."""
from __future__ import annotations

import ast
import functools
import shutil

import pandas as pd
import pytest

from cmrlib import runner
from cmrlib.analysis.clustering_study import Clustering
from cmrlib.analysis.agreement_study import Agreement
from cmrlib.analysis.figures_study import Figures
from cmrlib.methods import cussp, edes, heartmae, mvnet, segmentation, sslhf
from cmrlib.methods.segmentation.fitting import Maker
from cmrlib.runner import load_profile
from cmrlib.study import StudyError

STUDIES = [segmentation.Study, edes.Study, mvnet.Study, cussp.Study, sslhf.Study, heartmae.Study, Agreement, Clustering, Figures]
USER_PATHS = ("_csv", "_weights")  # parameters that name a user's file


def notebook(study) -> dict:
    (path,) = runner.discover(runner.NOTEBOOKS, [study.number])
    return {k: ast.literal_eval(src) for k, src in runner.declared(path).items()}


@pytest.mark.parametrize("study", STUDIES, ids=lambda s: s.method)
def test_the_notebook_declares_the_study_parameters_with_the_same_defaults(study):
    assert notebook(study) == study.PARAMS


@pytest.mark.parametrize("study", STUDIES, ids=lambda s: s.method)
def test_every_user_path_parameter_is_expanded_from_its_reference(study):
    assert {k for k in study.PARAMS if k.endswith(USER_PATHS)} == set(study.PATHS)


@pytest.mark.parametrize("study", STUDIES[:6], ids=lambda s: s.method)
def test_every_step_the_notebook_calls_is_in_the_studys_outline_and_every_outlined_piece_is_named(study):
    """A method Study's docstring points at `outline()`, not a hand-written list: each `study.X` a notebook cell
    calls is one of its steps, and each named piece a cached property."""
    import json
    import re

    (path,) = runner.discover(runner.NOTEBOOKS, [study.number])
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    called = set(re.findall(r"^study\.(\w+)\(\)", code, re.M)) | set(re.findall(r"study\.step\(study\.(\w+)", code))
    outline = study.outline()
    assert called and called <= set(outline["steps"]), called - set(outline["steps"])
    assert "checks" in outline["steps"] and outline["named"]
    assert all(isinstance(vars(study)[n], functools.cached_property) for n in outline["named"])


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_a_profile_sets_only_parameters_its_studies_declare(profile):
    prof = load_profile(profile)
    for study in STUDIES:
        p = study.parameters(prof, profile)
        assert p["profile"] == profile
        section = prof.get(study.number, {})
        assert all(p[k] == v for k, v in section.items())
        assert all(p[k] == v for k, v in prof.get("common", {}).items() if k in study.PARAMS and k not in section)


def test_an_unknown_or_ill_typed_parameter_is_refused_before_anything_runs():
    prof = load_profile("smoke")
    with pytest.raises(StudyError, match="not parameters of the cussp study"):
        cussp.Study.parameters(prof, "smoke", {"epoch": 3})
    with pytest.raises(ValueError, match="parameter epochs"):
        cussp.Study.parameters(prof, "smoke", {"epochs": "many"})
    with pytest.raises(StudyError, match="unknown parameter"):
        cussp.Study({"epoch": 3})


def test_a_path_parameter_given_as_a_reference_reaches_the_study_expanded(tmp_path, monkeypatch):
    from cmrlib.phantom import make_cohort

    make_cohort(tmp_path / "run" / "cohort", n=2, seed=0, n_frames=8, matrix=48, pixel_mm=4.0, progress=False)
    monkeypatch.setenv("CMRLIB_PATH_0123", str(tmp_path / "labels.csv"))
    study = cussp.Study({"run_dir": str(tmp_path / "run"), "figures_dir": str(tmp_path / "figures"),
                         "anatomy": "labels", "labels_csv": "$CMRLIB_PATH_0123", "threads": None})
    assert study.p["labels_csv"] == tmp_path / "labels.csv"
    assert study.out == tmp_path / "run" / "04"


def test_a_labels_table_that_matches_no_subject_stops_notebook_05_in_one_line(tmp_path):
    from cmrlib.methods.sslhf.data import HFLabelsError
    from cmrlib.phantom import make_cohort

    make_cohort(tmp_path / "run" / "cohort", n=2, seed=0, n_frames=8, matrix=48, pixel_mm=4.0, progress=False)
    (tmp_path / "labels.csv").write_text("subject,lvef\nnobody1,30\nnobody2,60\n")
    study = sslhf.Study({"run_dir": str(tmp_path / "run"), "figures_dir": str(tmp_path / "figures"),
                         "anatomy": "labels", "labels_csv": str(tmp_path / "labels.csv"), "threads": None})
    with pytest.raises(HFLabelsError, match="labels_csv labels.csv: none of its 2 subject\\(s\\) has a SAX cine"):
        study.cohort()


@pytest.mark.parametrize("package", [segmentation, edes, mvnet, cussp, sslhf, heartmae], ids=lambda p: p.__name__)
def test_a_method_package_exports_its_study_and_predictor_only(package):
    import inspect

    public = {n for n, v in vars(package).items() if not n.startswith("_") and not inspect.ismodule(v)}
    assert package.__all__ == ["Predictor", "Study"] and public == {"Predictor", "Study"}


def test_a_step_shows_each_table_it_returns_or_why_it_cannot_run(capsys):
    import pandas as pd

    from cmrlib.study import Study, StudySkipped

    def no_real_data():
        raise StudySkipped("no real cines under the data root")

    assert Study.step(None, no_real_data) is None
    assert capsys.readouterr().out.strip() == "skipped: no real cines under the data root"
    t = pd.DataFrame({"LVEF": [55.0]})
    assert Study.step(None, lambda: t) is t
    assert Study.step(None, lambda: {"Table I": t, "Table II": t.assign(LVEF=31.0)}) is None
    out = capsys.readouterr().out
    assert out.index("Table I") < out.index("55.0") < out.index("Table II") < out.index("31.0")


def test_a_step_without_its_data_raises_study_skipped_with_the_reason(tmp_path):
    from cmrlib.study import StudySkipped

    class Store:  # a phantom cohort's store, as far as the ACDC step looks
        def manifest(self):
            return pd.DataFrame(dict(source=["phantom"]))

    study = segmentation.Study.__new__(segmentation.Study)
    study.p, study.store = dict(data_dir=str(tmp_path), acdc_store=None), Store()
    with pytest.raises(StudySkipped, match="no ACDC training folder"):
        study.fit_acdc()


def test_without_the_acdc_only_model_its_step_skips_and_it_cannot_be_shipped(tmp_path):
    """epochs_acdc=0 (the default profile) leaves the ACDC-only yardstick out: its step says so, an earlier run's
    tables of it in the same folder go (no headline shows them as this run's), `checks` reads it as absent, and
    asking to ship it is an error rather than another model in its place."""
    from cmrlib.results import Notebook
    from cmrlib.study import StudySkipped

    study = segmentation.Study.__new__(segmentation.Study)
    study.p = dict(epochs_acdc=0, sax_predictor="acdc")
    study.nb = Notebook("01", tmp_path, tmp_path / "figures", 0)
    stale = study.nb.table(pd.DataFrame({"dice_mean": [0.9]}), "dice_acdc")
    kept = study.nb.table(pd.DataFrame({"dice_mean": [0.9]}), "dice_acdc_shipped")
    study.__dict__["acdc_cohort"] = object()  # an ACDC store is there; only the model is not trained
    with pytest.raises(StudySkipped, match="epochs_acdc=0"):
        study.fit_acdc()
    assert not stale.exists() and kept.exists()
    assert study.optional("acdc_model") is None
    with pytest.raises(ValueError, match="epochs_acdc=0"):
        study.shipped_sax


def test_sax_models_read_as_shipped_and_mirror_only_what_learned_mirrored_frames():
    """`centred` reaches every SAX model; `tta` only those whose recipe mirrored their training frames (the phantom
    model's RV is always on one side, so its mirrored reading would average two different hearts); long-axis models
    keep their own reading."""
    from torch import nn

    make = Maker(dict(centred=True, tta=True, augmentation={"sax": "randomised", "sax_real": "randomised_mirrored",
                                                            "lax": "phantom"}), {}, {}, {}, None, None, None)
    phantom, tuned, lax = nn.Linear(1, 1), nn.Linear(1, 1), nn.Linear(1, 1)
    make.reads_as_shipped(phantom, ["SAX"], "sax")
    make.reads_as_shipped(tuned, ["SAX"], "sax_real")
    make.reads_as_shipped(lax, ["2CH", "4CH"], "lax")
    assert (phantom.centred, phantom.tta) == (True, False) and (tuned.centred, tuned.tta) == (True, True)
    assert not hasattr(lax, "centred") and not hasattr(lax, "tta")


def test_a_reused_sax_model_read_another_way_has_its_decision_calibrated_again(tmp_path):
    """A model file holds the decision calibrated under the reading it was trained with; reused under a profile that
    reads another way (round the heart, mirrored), it is calibrated again on validation cines; read the same way,
    not."""
    from torch import nn

    calibrated, net = [], nn.Linear(1, 1)

    class Counted(Maker):
        def calibrate(self, name, model, st, views, ids=None):
            calibrated.append(name)

    make = Counted(dict(centred=True, tta=True, augmentation={"sax_real": "randomised_mirrored"}, retrain=False), {},
                   {}, {}, lambda path, settings, fit, finish=None, **how: (net, True, None), None, None)
    model, row = make("sax_real", None, ["SAX"], 1, "sax_real", tmp_path / "m.model", {})
    assert row["reused"] and (model.centred, model.tta) == (True, True) and calibrated == ["sax_real"]
    make("sax_real", None, ["SAX"], 1, "sax_real", tmp_path / "m.model", {})
    assert calibrated == ["sax_real"]  # it already reads the profile's way


def test_a_runs_table1_measures_are_segmented_once_per_segmenter_and_shared(tmp_path):
    """Notebooks 06 and 08 read one table of the cohort's Table-1 measures per segmentation Predictor (named by its
    content, so a retrained segmenter gets its own): a second Study segments nothing."""
    from cmrlib.measure import ES_OVERSHOOT_ML, subject_measures, table1_frames
    from cmrlib.models import unet11
    from cmrlib.phantom import make_cohort

    run = tmp_path / "run"
    store = make_cohort(run / "cohort", n=2, seed=2, views=("SAX", "4CH"), workers=1, progress=False, n_frames=8,
                        matrix=64, pixel_mm=3.0)
    nets = {"SAX": unet11(6, width=0.0625), "LAX": unet11(6, width=0.0625)}
    segmentation.Predictor(nets).save(run / "predictors" / "segmentation.predictor")
    subjects = sorted(store.manifest().subject.unique())

    def measured(calls: list, **how):
        study = Clustering({"run_dir": str(run)})
        study.segmentation().labels = lambda c: calls.append(c.cine_id) or c.labels  # the cines' own masks
        return study.table1_measures(study.store, subjects, progress=False, **how)

    first, second = [], []
    table = measured(first)
    assert len(first) == 4 and list(table.index) == subjects and measured(second).equals(table) and not second
    key = segmentation.Predictor(nets).content_key()[:16]
    assert [f.name for f in (run / "table1").iterdir()] == [f"cohort-{store.fingerprint()}-{key}.csv"]
    reads = {c: store.read(c, table1_frames(store, c)).labels for c in store.ids()}
    want = subject_measures(store, reads).set_index("subject")
    assert table["LVEF_auto"].to_numpy() == pytest.approx(want["LVEF_auto"].to_numpy())
    grown, plain = [], []  # the LV's ES overshoot asked of a table written without it: measured again, then kept
    with_it = measured(grown, overshoot=True)
    assert len(grown) == 4 and with_it[ES_OVERSHOOT_ML].notna().all() and with_it.drop(columns=ES_OVERSHOOT_ML).equals(
        table) and measured(plain).equals(table) and not plain

    shutil.rmtree(run / "cohort")  # the same folder, other subjects: its own table, segmented again
    store = make_cohort(run / "cohort", n=2, seed=3, views=("SAX", "4CH"), workers=1, progress=False, n_frames=8,
                        matrix=64, pixel_mm=3.0)
    third = []
    assert not measured(third).equals(table) and len(third) == 4 and len(list((run / "table1").iterdir())) == 2
