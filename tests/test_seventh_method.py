"""A seventh method touches only its own package, its notebook and the one list: a dummy method in a temporary
package is trained by `cmrlib fit`, read by `cmrlib analyse` into a patient's report, and its notebook's checks and
headline table reach the run's report, with no other module changed."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest

import cmrlib.methods
from cmrlib import predictor
from cmrlib.analyse import analyse
from cmrlib.analysis.report import report
from cmrlib.fit import fit
from cmrlib.phantom import make_cohort

PACKAGE = '''
"""A dummy method: the mean intensity of each 4CH cine, scaled."""
import numpy as np
import pandas as pd

from cmrlib.predictor import Prediction, Predictor as Base
from cmrlib.study import Study as BaseStudy


class Predictor(Base):
    method = "dummy"
    views = ("4CH",)
    title = "Dummy intensity (notebook 10)"

    def _predict(self, cines):
        out = Prediction(self.method, self.model)
        for c in cines:
            out.add("mean intensity", float(np.mean(c.pixels)) * self.prep["scale"], "a.u.", c.cine_id)
        return out


class Study(BaseStudy):
    method = "dummy"
    number = "10"
    PARAMS = {**BaseStudy.RUN, "scale": 1.0}

    def train(self, finish=None, rows=None):
        self.nb.predictor(Predictor({}, dict(scale=self.p["scale"]), provenance=self.nb.provenance(self.store)))
        return [dict(model="dummy", valid_loss=0.0)]

    def headline_tables(self):
        yield "headline", "dummy: the scale it ran with", pd.DataFrame(dict(scale=[self.p["scale"]]))

    def checks(self):
        return self.targets([("scale used", self.p["scale"], ">=", 1.0)])
'''


@pytest.fixture
def dummy_method(tmp_path, monkeypatch):
    """`cmrlib.methods.dummy` in a temporary folder, named once in the one list."""
    folder = tmp_path / "ext" / "dummy"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    monkeypatch.setattr(cmrlib.methods, "__path__", [*cmrlib.methods.__path__, str(folder.parent)])
    monkeypatch.setattr(predictor, "METHODS", (*predictor.METHODS, "dummy"))
    yield
    for name in [n for n in sys.modules if n.startswith("cmrlib.methods.dummy")]:
        del sys.modules[name]


def test_a_seventh_method_is_fitted_analysed_and_reported_through_the_protocol_alone(tmp_path, dummy_method):
    from test_predictor import SMALL, _nifti_patient

    from cmrlib.phantom import simulate_subject

    run = tmp_path / "run"
    make_cohort(run / "cohort", n=4, seed=0, views=("4CH",), n_frames=8, matrix=48, pixel_mm=4.0, progress=False)
    rec = fit("dummy", "smoke", run, dict(scale=2.0), out=run / "predictors")
    assert rec["rows"] == [dict(model="dummy", valid_loss=0.0)]

    subject = simulate_subject(1, seed=0, config=SMALL, views=("2CH", "4CH"))
    files = analyse(_nifti_patient(tmp_path / "patient", subject), run, tmp_path / "report", log=lambda *_: None)
    assert "Dummy intensity (notebook 10)" in files["html"].read_text()
    assert "mean intensity" in files["csv"].read_text()

    study = predictor.study_class("dummy")({"run_dir": str(run), "figures_dir": str(tmp_path / "figures"),
                                            "scale": 2.0})
    study.checks()
    (run / "run.json").write_text(json.dumps(dict(profile="smoke", notebooks=[
        dict(notebook="10_dummy.ipynb", status="ok", wall_s=1.0)])))
    text = report(run)
    assert "10 · dummy: the scale it ran with" in text and "scale used" in text
