"""One protocol for every method's trained model: a Predictor holds the network(s) *and* every preprocessing
setting they were trained with, so a caller needs only the file and a patient's cines.

    p = predictor.load("runs/default/predictors/cussp.predictor")
    result = p.predict(cines)            # a Cine, or one subject's cines (any views)
    result.table()                       # method, model, measure, value, unit, cine

A Predictor that needs another (CUSSP and SSLHF find the heart with notebook 01's segmenter) keeps it by
reference (its method's name: the predictor of that name in the same `predictors/` folder) and `load` brings
it along. `provenance` says where a model came from:
the run, its commit, the cohort it was trained on (a phantom model is a demonstration, never a clinical
estimate) and what real-data check, if any, stands behind its numbers.
"""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import pandas as pd

from .record import Cine

SUFFIX = ".predictor"
METHODS = ("segmentation", "edes", "mvnet", "cussp", "sslhf", "heartmae")  # notebooks 01-06: the one list
SEGMENTER = "segmentation"  # the method whose Predictor finds the heart for others (CUSSP, SSLHF, notebook 07)


class PredictorError(ValueError):
    """A predictor that is missing, is not a predictor, or cannot be opened: the message names it and why."""


class NotApplicable(ValueError):
    """A patient's cines lack what a predictor needs (a view, enough frames, a findable valve): the reason."""


@dataclass
class Prediction:
    COLUMNS: ClassVar[tuple[str, ...]] = ("method", "model", "measure", "value", "unit", "cine")  # of `table`

    """What a predictor says about one patient: named measures with units, and the arrays behind them (labels,
    curves, tracks) for figures."""

    method: str
    model: str
    measures: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    cines: dict[str, str] = field(default_factory=dict)  # measure -> the cine it was measured on
    detail: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def add(self, name: str, value: float, unit: str = "", cine: str = "") -> None:
        """One named measure."""
        self.measures[name] = float(value)
        self.units[name] = unit
        self.cines[name] = cine

    def table(self) -> pd.DataFrame:
        """One row per measure: method, model, measure, value, unit, cine."""
        return pd.DataFrame([dict(method=self.method, model=self.model, measure=k, value=v, unit=self.units[k],
                                  cine=self.cines.get(k, "")) for k, v in self.measures.items()],
                            columns=list(self.COLUMNS))


def as_cines(subject: Cine | Sequence[Cine]) -> list[Cine]:
    """A cine or one subject's cines as a list."""
    return [subject] if isinstance(subject, Cine) else list(subject)


def of_view(cines: Sequence[Cine], *views: str) -> list[Cine]:
    """The cines of these views, in the order given."""
    return [c for v in views for c in cines if c.view == v]


class Predictor:
    """A trained model with its preprocessing: `predict(cine or cines) -> Prediction`, `save(path)`, `load(path)`.

    nets: the torch modules (or records holding them); prep: every preprocessing setting the nets were trained
    with; needs: other predictors by method name (found beside this one); provenance: where it came from."""

    method: ClassVar[str] = ""
    views: ClassVar[tuple[str, ...]] = ()  # the views it reads
    title: ClassVar[str] = ""  # its section's heading in a patient report
    short_name: ClassVar[str] = ""  # how the page's banners name its section (empty: by its title)
    remark: ClassVar[str] = ""  # what a reader of its section should know about how its numbers are read
    roles: ClassVar[dict[str, tuple[type, ...]]] = {}  # a net's name (a regular expression) -> the classes it may be

    def __init__(self, nets: dict[str, Any], prep: dict | None = None, needs: dict[str, str] | None = None,
                 provenance: dict | None = None, model: str = ""):
        self.nets, self.prep = dict(nets), dict(prep or {})
        self.needs, self.provenance = dict(needs or {}), dict(provenance or {})
        self.model = model or self.method
        self.needed: dict[str, Predictor] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r}, nets={list(self.nets)}, prep={self.prep})"

    def reads(self, view: str) -> bool:
        """Whether one of its nets reads cines of this view."""
        return view in self.views

    def wanted(self) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
        """What it cannot read a cine without, as its settings say: the nets it must hold (each a `roles` pattern
        one of its nets matches), its preprocessing settings, and the predictors it must name (its name for each ->
        that predictor's method)."""
        return (), (), {}

    def content_problem(self) -> str | None:
        """Why its nets, settings or needs cannot be this method's (a file whose role contradicts what it holds),
        None when they can: such a file is refused when it opens, never half way through a patient."""
        kinds = ", ".join(self.roles) or "none"
        for name, net in self.nets.items():
            allowed = next((t for r, t in self.roles.items() if re.fullmatch(r, str(name))), None)
            if allowed is None:
                return f"a net named {str(name)[:40]!r} has no place in a {self.method} predictor (nets: {kinds})"
            if not isinstance(net, allowed):
                return (f"its {str(name)[:40]!r} net is a {type(net).__name__}, not a "
                        f"{' or '.join(t.__name__ for t in allowed)}")
        nets, prep, needs = self.wanted()
        for r in nets:
            if not any(re.fullmatch(r, str(n)) for n in self.nets):
                return f"it holds no {r} net"
        if missing := [k for k in prep if k not in self.prep]:
            return f"its settings lack {', '.join(missing)}"
        for name, method in needs.items():
            if self.needs.get(name) != method:
                return f"it must name its {name} (the {method} predictor), not {str(self.needs.get(name))[:40]!r}"
        return None

    def need(self, name: str) -> "Predictor":
        """A predictor this one depends on (loaded with it)."""
        if name not in self.needed:
            raise PredictorError(f"{self.method}: its {name} predictor was not loaded with it (use predictor.load)")
        return self.needed[name]

    def predict(self, subject: Cine | Sequence[Cine]) -> Prediction:
        """The method's measures for one patient's cines; `NotApplicable` when they lack what it needs."""
        cines = as_cines(subject)
        mine = of_view(cines, *self.views)
        if not mine:
            have = ", ".join(sorted({c.view for c in cines})) or "none"
            raise NotApplicable(f"{self.method} reads {'/'.join(self.views)} cines; this patient has {have}")
        return self._predict(mine)

    def _predict(self, cines: list[Cine]) -> Prediction:
        raise NotImplementedError

    def figure(self, prediction: Prediction, cines: dict[str, Cine]):
        """The matplotlib figure showing what the model saw and said about one patient (cine id -> Cine); None when
        the method has no picture."""
        return None

    def content_key(self) -> str:
        """A hash of what the Predictor computes (its nets with their weights and settings, its preprocessing, the
        predictors it needs), never of its provenance: caches built on its output stay valid when the same models
        are exported again by a later run."""
        from .modelfile import fingerprint

        return fingerprint(dict(method=self.method, prep=self.prep, needs=self.needs, nets=self.nets))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the folder (`predictor.json` + `weights.safetensors`) atomically: readers see the old one or the
        whole new one."""
        from .modelfile import write

        return write(path, dict(method=self.method, model=self.model, prep=self.prep, needs=self.needs,
                                provenance=self.provenance, nets=self.nets), kind="predictor")


def predictor_class(method: str) -> type[Predictor]:
    """A method's Predictor class, defined in its method's package (imported only when asked for)."""
    return importlib.import_module(f"cmrlib.methods.{method}").Predictor


def study_class(method: str):
    """A method's Study class (its notebook's experiment), defined in its method's package."""
    return importlib.import_module(f"cmrlib.methods.{method}").Study


def load(path: str | os.PathLike, loaded: dict | None = None) -> Predictor:
    """The Predictor in a folder written by `Predictor.save` (on the CPU), with the predictors it needs (by name,
    from the same `predictors/` folder only); `loaded` (folder -> Predictor, or the error it gave) shares one copy of
    a predictor several others need and reads a broken one once. A folder named for one method must hold that
    method's predictor, and a `needs` cycle is refused. Nothing in the folder is ever unpickled or run."""
    from .modelfile import ModelFileError, read

    path = Path(path)
    loaded = {} if loaded is None else loaded
    if path in loaded:
        if loaded[path] is LOADING:
            raise PredictorError(f"{path.name}: its predictors need each other (a cycle); refused")
        if isinstance(loaded[path], PredictorError):
            raise loaded[path]
        return loaded[path]
    if not path.exists():
        raise PredictorError(f"{path.name}: no predictor here (its notebook writes it into <run>/predictors)")
    loaded[path] = LOADING
    try:
        p = _load(path, loaded, read, ModelFileError)
    except PredictorError as e:
        loaded[path] = e
        raise
    loaded[path] = p
    return p


LOADING = object()  # a predictor being loaded: met again, its needs run in a cycle
TEXT_FIELDS = ("run", "notebook", "commit", "trained_on", "cohort", "real_check", "real_training", "created",
               "profile", "cross_fitted")  # a Predictor's provenance: text (or none) the report prints
NUMBER = (int, float)


def provenance_problem(prov: dict) -> str | None:
    """What is wrong with a provenance's fields the report reads (their types), None when nothing is: a model file
    of the wrong shape is refused when opened, never when a report is half written."""
    from .stats import SCALES

    for k in TEXT_FIELDS:
        if prov.get(k) is not None and not isinstance(prov[k], (str, int)):
            return f"{k} is a {type(prov[k]).__name__}, not text"
    cal = prov.get("intervals")
    if cal is not None:
        if not isinstance(cal, dict):
            return "intervals is not a mapping"
        for m, c in cal.items():
            if not (isinstance(c, dict) and isinstance(c.get("half_width"), NUMBER) and isinstance(c.get("n"), NUMBER)
                    and all(isinstance(c.get(f, 0.9), NUMBER) for f in ("level", "coverage"))
                    and c.get("scale", "none") in SCALES):
                return f"intervals of {str(m)[:20]} are not a half-width (of a known scale) and a count"
    checks = prov.get("model_checks")
    if checks is not None and not (isinstance(checks, dict) and all(
            isinstance(c, dict) and isinstance(c.get("passed"), bool) and isinstance(c.get("check", ""), str)
            for c in checks.values())):
        return "model_checks is not a check and its outcome per model"
    for k in ("validation",):
        if prov.get(k) is not None and not isinstance(prov[k], dict):
            return f"{k} is not a mapping"
    return None


def _load(path: Path, loaded: dict, read, ModelFileError) -> Predictor:
    try:
        got = read(path, kind="predictor")
    except ModelFileError as e:
        raise PredictorError(str(e)) from None
    keys = {"method", "model", "prep", "needs", "provenance", "nets"}
    if set(got) != keys or got["method"] not in METHODS:
        raise PredictorError(f"{path.name}: not a cmrlib predictor (method {str(got.get('method'))[:40]!r})")
    if path.name.endswith(SUFFIX) and path.name != file_name(got["method"]):
        raise PredictorError(f"{path.name}: holds the {got['method']} predictor; a folder of that name holds "
                             f"{path.name.removesuffix(SUFFIX)}'s")
    if not all(isinstance(got[k], dict) for k in ("prep", "needs", "provenance", "nets")):
        raise PredictorError(f"{path.name}: prep, needs, provenance and nets must be mappings")
    if why := provenance_problem(got["provenance"]):
        raise PredictorError(f"{path.name}: provenance {why}")
    p = predictor_class(got["method"])(got["nets"], got["prep"], got["needs"], got["provenance"], str(got["model"]))
    for name, method in p.needs.items():
        if method not in METHODS:
            raise PredictorError(f"{path.name}: needs {name!r} from {str(method)[:40]!r}, which is not a predictor "
                                 f"name ({', '.join(METHODS)})")
    try:
        why = p.content_problem()
    except PredictorError as e:  # a setting its checks read is itself unknown
        why = str(e)
    if why:
        raise PredictorError(f"{path.name}: {why}")
    for name, method in p.needs.items():
        p.needed[name] = load(path.parent / file_name(method), loaded)
    return p


def file_name(method: str) -> str:
    """A method's predictor file in a run's `predictors/` folder."""
    return f"{method}{SUFFIX}"


def run_predictors(run_dir: str | os.PathLike) -> tuple[dict[str, Predictor], dict[str, str], dict[str, str]]:
    """Every method's predictor a run folder holds; why the others are absent; and those that exist but cannot be
    opened (damaged, of another format, or needing one of those), each with its reason."""
    folder = Path(run_dir) / "predictors"
    have, absent, broken, loaded = {}, {}, {}, {}
    for m in METHODS:
        path = folder / file_name(m)
        if not path.exists():
            absent[m] = f"this run has no predictor (notebook {study_class(m).number} writes it)"
            continue
        try:
            have[m] = load(path, loaded)  # the segmentation predictor is read once, for all
        except PredictorError as e:
            broken[m] = str(e)
    return have, absent, broken
