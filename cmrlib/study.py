"""A paper's experiment as library code. Each method's Study declares its parameters (defaults here, a profile's
values over them), prepares the cohort once, fits every row of the paper's table, evaluates them with CIs and
draws the figures; its notebook calls one step a cell, and `cmrlib fit METHOD` calls the same steps."""
from __future__ import annotations

import functools
import inspect
import json
import operator
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import pandas as pd

from . import dask_tasks
from .io.real import REAL_SAX_STORE, real_sax_cohort
from .labels import NoLabels
from .params import merge
from .phantom import make_cohort
from .record import Cine
from .results import Notebook, setup
from .skipped import StudySkipped
from .utils import data_path

ANATOMY = ("segmenter", "labels")  # where a method finds the heart in a cine



class Lazy(dict):
    """A mapping whose value for a key is made on first access (`make(key)`) and kept: a cached property per key,
    so a Study's per-fold or per-model pieces are named state too (`Study.fold_proxies[fold]`)."""

    def __init__(self, make: Callable[[Any], Any]):
        super().__init__()
        self.make = make

    def __missing__(self, key):
        value = self[key] = self.make(key)
        return value

class StudyError(ValueError):
    """A Study cannot start: an unknown parameter, or the run folder lacks what the experiment needs."""


def step(fn: Callable, *args, **kwargs):
    """`fn(...)`, or None with the reason printed when it cannot run here (`StudySkipped`): what a notebook cell
    shows instead of a table."""
    try:
        return fn(*args, **kwargs)
    except StudySkipped as e:
        print(f"skipped: {e}")
        return None


def shows(path: str, doc: str) -> Callable:
    """A notebook step that shows a named piece or a part of it (`fit = shows("models.log", "...")`): its wiring
    on one line, as a MONAI bundle names a component's input."""
    get = operator.attrgetter(path)

    def shown(self):
        return get(self)

    shown.__doc__ = doc
    return shown


def by_reason(failures: pd.DataFrame, none: str) -> pd.DataFrame | str:
    """Cines a preprocessing step left out, per store and reason, or `none` when it left out none."""
    return failures.groupby(["store", "reason"]).size().rename("cines").reset_index() if len(failures) else none


def own_labels(cine: Cine):
    """A cine's own label maps at every frame (the phantom's truth, a cohort's manual or pseudo-labels)."""
    if cine.labels is None or not cine.labelled.all():
        have = 0 if cine.labels is None else int(cine.labelled.sum())
        raise NoLabels(f"{cine.cine_id}: label maps at {have} of {cine.n_frames} frames; anatomy='labels' needs every "
                       "frame labelled")
    return cine.labels


class Study:
    """One paper's experiment on the run's cohort; subclasses set `method`, `number` (the notebook) and `PARAMS`
    (every parameter with its default: the notebook's parameters cell holds the same, a test checks)."""

    method: ClassVar[str] = ""
    number: ClassVar[str] = ""
    RUN: ClassVar[dict[str, Any]] = {"profile": "smoke", "seed": 0, "run_dir": "runs/smoke", "figures_dir": "figures",
                                     "budget_min": None}
    PARAMS: ClassVar[dict[str, Any]] = {}  # RUN and the experiment's own
    PATHS: ClassVar[tuple[str, ...]] = ()  # parameters that name a user's file (passed as $VAR references)
    # its batch parameters: under `accelerate launch` (`cmrlib fit`) every fastai Learner trains data-parallel, each
    # process at this batch on its share of every epoch, so N processes at B train like one process at N x B
    BATCHES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: dict[str, Any], out: str | Path | None = None):
        unknown = set(params) - set(self.PARAMS)
        if unknown:
            raise StudyError(f"unknown parameter(s) {', '.join(sorted(unknown))} for the {self.method} study")
        p = {**self.PARAMS, **params}
        p.update({k: data_path(p[k]) for k in self.PATHS})  # the runner passes a user's path as a $VAR reference
        self.p = p
        self.nb: Notebook = setup(self.number, p["run_dir"], p["figures_dir"], p["seed"], p.get("threads"))
        if out is not None:  # `cmrlib fit`: its own folder, its Predictor beside its models
            self.nb.folder = Path(out)
            self.nb.predictors = Path(out)
            self.nb.out.mkdir(parents=True, exist_ok=True)
            self.nb.guard()
        self.client = None
        if "workers" in self.PARAMS:  # one task per subject or cine for the data-parallel steps
            self.client = dask_tasks.start(p["scheduler"], p["workers"])
            print("data-parallel steps:", dask_tasks.describe(self.client))
        self.t_start = time.perf_counter()
        self.store = self.nb.cohort()
        self.logs: list[dict] = []

    @classmethod
    def from_notebook(cls, names: dict[str, Any]) -> "Study":
        """The Study with a notebook's parameter values (its `globals()` after papermill's injection)."""
        return cls({k: names[k] for k in cls.PARAMS if k in names})

    @classmethod
    def parameters(cls, profile: dict[str, Any], name: str, overrides: dict | None = None) -> dict[str, Any]:
        """The defaults, a profile's common keys this Study declares and its notebook's section, then `overrides`:
        what `cmrlib fit` trains with (never read from a notebook file)."""
        section = profile.get(cls.number, {})
        unknown = (set(section) | set(overrides or {})) - set(cls.PARAMS)
        if unknown:
            raise StudyError(f"profile {name!r} or the overrides set {sorted(unknown)}, not parameters of the "
                             f"{cls.method} study")
        declared = {k: repr(v) for k, v in cls.PARAMS.items()}
        return {**cls.PARAMS, **merge(profile, cls.number, declared, overrides), "profile": name}

    @property
    def out(self) -> Path:
        return self.nb.out

    def minutes(self) -> float:
        """Wall time since the Study started (the notebooks' time target)."""
        return (time.perf_counter() - self.t_start) / 60

    def time_target(self) -> list[tuple[str, float, str, float]]:
        """The notebook's wall time against its profile's budget, as a target row (none without a budget)."""
        budget = self.p["budget_min"]
        return [] if budget is None else [(f"notebook {self.number} wall time (min)", self.minutes(), "<=", budget)]

    @functools.cached_property
    def _segmentation_file(self) -> Path:
        from .predictor import SEGMENTER, file_name

        return self.nb.run_dir / "predictors" / file_name(SEGMENTER)

    @functools.cached_property
    def _segmentation(self):
        from .predictor import PredictorError, load

        if not self._segmentation_file.exists():
            raise FileNotFoundError(f"notebook {self.number} needs notebook 01's segmenters: no "
                                    f"{self._segmentation_file.name} (run notebook 01 on this run folder first)")
        try:
            return load(self._segmentation_file).keep_labels_in(self._labels_folder)
        except PredictorError as e:
            raise PredictorError(f"notebook {self.number} cannot open notebook 01's segmenters: {e}") from None

    def segmentation(self):
        """The run's segmentation Predictor (notebook 01's), read once per Study, or a clear error naming what to
        run."""
        return self._segmentation

    def real_segmenter(self):
        """What reads a real ACDC patient: notebook 01's cross-fitted SAX segmenters, each patient by the fold model
        that never saw it, where the shipped segmenter is of their recipe; else the run's segmentation Predictor."""
        return self._real_segmenter

    def segmenter_or_none(self, what: str, real: bool = False):
        """The run's segmentation Predictor (`real`: `real_segmenter`), or None with `what` said to be skipped and
        why, where the run has none."""
        try:
            return self.real_segmenter() if real else self.segmentation()
        except FileNotFoundError as e:
            print(f"{what} skipped: {e}")
            return None

    @functools.cached_property
    def _real_segmenter(self):
        seg = self.segmentation()
        return seg.cross_fitted(self.nb.run_dir) or seg

    @functools.cached_property
    def phantom_segmenter(self):
        """Notebook 01's phantom-only SAX segmenter as a segmentation Predictor (it never saw a real patient: the
        baseline real-data steps score on every patient); None when the run has none."""
        from .predictor import SEGMENTER, predictor_class

        seg = predictor_class(SEGMENTER).phantom_only(self.nb.run_dir)
        return None if seg is None else seg.keep_labels_in(self._labels_folder)

    @property
    def _labels_folder(self) -> Path:
        """Where the run's segmenters keep every cine's labels, so that its notebooks segment a cine once."""
        return self.nb.run_dir / "labels"

    @classmethod
    def outline(cls) -> dict[str, list[str]]:
        """The Study's steps (its public methods, as the class defines them) and the named pieces they share (its
        cached properties): read from the class, so no hand-written list of them drifts."""
        own = [(name, v) for name, v in vars(cls).items() if not name.startswith("_")]
        return {"steps": [name for name, v in own if inspect.isfunction(v)],
                "named": [name for name, v in own if isinstance(v, functools.cached_property)]}

    def optional(self, name: str):
        """A named result, or None when its step cannot run here (`StudySkipped`): what a summary step such as
        `checks` reads of the sections that may be absent."""
        try:
            return getattr(self, name)
        except StudySkipped:
            return None

    def fit_or_reuse(self, path: Path, settings: dict, fit: Callable[[], Any], finish=None, **how):
        """`learn.fit_or_reuse`, the one reuse rule of every model, with this Study's `retrain`."""
        from .learn import fit_or_reuse

        return fit_or_reuse(path, settings, fit, finish, retrain=bool(self.p.get("retrain", False)), **how)

    def table1_measures(self, store, subjects, progress: bool = True, real: bool = False, overshoot: bool = False
                        ) -> pd.DataFrame:
        """The segmentation Predictor's Table-1 measures of `subjects` in `store` (`<measure>_auto` and, where a
        chamber gave none, `error_auto`; indexed by subject, sorted): segmented once per run, store and Predictor in
        `<run>/table1/` (notebooks 06 and 08 read the same cohort; named by the store's content, so a cohort made again
        in its folder is segmented again), a subject not there yet segmented and added. `real`: real ACDC patients,
        read by `real_segmenter`. `overshoot`: with each one's LV ES overshoot (`measure.ES_OVERSHOOT_ML`, on which
        a report withholds the numbers read at ES)."""
        from fastprogress.fastprogress import progress_bar

        from .measure import ES_OVERSHOOT_ML, TABLE1_VIEWS, es_overshoots, subject_measures, table1_frames
        from .utils import atomic_file

        seg, wanted = self.real_segmenter() if real else self.segmentation(), sorted(set(subjects))
        key = seg.content_key() if real else self._segmentation_key
        path = self.nb.run_dir / "table1" / f"{Path(store.root).name}-{store.fingerprint()}-{key[:16]}.csv"
        have = pd.read_csv(path, dtype={"subject": str}) if path.exists() else pd.DataFrame({"subject": []})
        if overshoot and len(have) and ES_OVERSHOOT_ML not in have:  # a table written without it: measured again
            have = pd.DataFrame({"subject": []})
        todo = set(wanted) - set(have.subject)
        ids = [f"{s}_{v}" for s in sorted(todo) for v in TABLE1_VIEWS if seg.reads(v) and f"{s}_{v}" in store]
        if ids:
            labels = {c: seg.labels(store.read(c, table1_frames(store, c))) for c in progress_bar(ids, display=progress)}
            new = subject_measures(store, labels)
            new = new[["subject", *[c for c in new.columns if c.endswith("_auto")]]]
            if overshoot or ES_OVERSHOOT_ML in have:
                new = new.merge(es_overshoots(store, labels, manual=False)[["subject", ES_OVERSHOOT_ML]], on="subject",
                                how="left")
            have = pd.concat([have, new], ignore_index=True).sort_values("subject")
            with atomic_file(path) as tmp:
                have.to_csv(tmp, index=False)
        done = set(have.subject)
        have = have if overshoot else have.drop(columns=ES_OVERSHOOT_ML, errors="ignore")
        return have.set_index("subject").reindex([s for s in wanted if s in done])

    def anatomy(self, kind: str, real: bool = False) -> Callable[[Cine], Any]:
        """Where this Study finds the heart (`anatomy`): the run's `kind` ('SAX' or 'LAX') segmenter or the cines'
        own label maps; a function cine -> canonical labels at every frame. `real`: real ACDC patients, read by
        `real_segmenter`."""
        source = self.p["anatomy"]
        if source == "labels":
            return own_labels
        if source != "segmenter":
            raise StudyError(f"anatomy is one of {ANATOMY}, got {source!r}")
        seg = self.segmentation()
        if kind not in seg.nets:
            raise FileNotFoundError(f"notebook {self.number} needs notebook 01's {kind} segmenter; the run's "
                                    f"segmentation predictor has {', '.join(seg.nets)}")
        return self.real_segmenter().labels if real else seg.labels

    def anatomy_key(self, real: bool = False) -> str:
        """What a cache built with `anatomy` depends on: 'labels', or the segmentation Predictor's content key (its
        weights and settings: never its path, which may name a person, nor its provenance); `real`: the real
        segmenter's."""
        if self.p["anatomy"] == "labels":
            return "labels"
        return self.real_segmenter().content_key() if real else self._segmentation_key

    @functools.cached_property
    def _segmentation_key(self) -> str:
        return self.segmentation().content_key() if self._segmentation_file.exists() else "absent"

    def step(self, fn: Callable, *args, **kwargs):
        """One notebook step and its result: a table returned, several (a tuple, or a dict by title) shown one
        after another; one that cannot run here (`StudySkipped`) prints its reason instead."""
        out = step(fn, *args, **kwargs)
        if not isinstance(out, (tuple, dict)):
            return out
        from IPython.display import display

        for title, t in out.items() if isinstance(out, dict) else ((None, t) for t in out):
            if title is not None:
                print(title)
            display(t)
        return None

    def real_sax(self, k: int = 5):
        """The run's real SAX cohort and its folds (`io.real.real_sax_cohort` in `<run>/real_sax`); `StudySkipped`
        when the data root has none."""
        from .utils import data_root

        with self.nb.timer("real SAX cohort"):
            return real_sax_cohort(data_root(self.p.get("data_dir")), self.nb.run_dir / REAL_SAX_STORE,
                                   self.p["seed"], k, self.p.get("real_per_group"))

    def real_found(self, views: tuple[str, ...], missing: str, reference: str | None = None, labelled: bool = False
                   ) -> list:
        """The real subjects under the data root with a cine of `views` (`io.real.real_subjects`; those whose reference
        is of kind `reference` where given, any but none for "any"); `StudySkipped` naming what is `missing`."""
        from .io.real import NONE, real_subjects

        found = [s for s in real_subjects(self.p.get("data_dir"), views, labelled) if reference is None
                 or s.reference_is == reference or (reference == "any" and s.reference_is != NONE)]
        if not found:
            raise StudySkipped(f"no {missing} under the data root (set data_dir or $CMRLIB_DATA)")
        return found

    def real_named(self, views: tuple[str, ...], missing: str, reference: str | None = None) -> list[tuple]:
        """(name, cine) of every cine of `real_found`'s subjects: what a Predictor reads, named as its tables show."""
        return [pair for s in self.real_found(views, missing, reference) for pair in s.named()]

    def _phantom_record(self) -> dict:
        """The cohort's phantom record (`phantom.json`: the generator's seed, settings and subject numbers); {} for a
        real cohort."""
        made = self.store.root / "phantom.json"
        return json.loads(made.read_text()) if made.exists() else {}

    def phantom_after(self, ph: dict | None = None) -> int:
        """The first phantom subject number after the cohort's (0 for a real cohort): where more subjects begin;
        `ph`: the cohort's phantom record, when read already."""
        ph = self._phantom_record() if ph is None else ph
        return int(ph.get("start", 0)) + int(ph.get("n", 0))

    def phantom_more(self, name: str, n: int, views: tuple[str, ...], start: int | None = None, **config):
        """`n` more phantom subjects made like the cohort's (its generator and settings, `config` over them; subject
        numbers from `start`, by default after the cohort's) in `<out>/<name>`; None for a real cohort."""
        ph = self._phantom_record() if n else {}
        if not ph:
            return None
        first = self.phantom_after(ph) if start is None else start
        from .distributed import main_process_first

        with self.nb.timer(f"{name} generation"), main_process_first():  # under `accelerate`: process 0 writes it
            return make_cohort(self.out / name, n=int(n), seed=ph["seed"], views=views, scheduler=self.client,
                               start=int(first), progress=True, renew=True, **{**ph["config"], **config})

    def cached(self, kind, name: str, key: dict, build: Callable[[], Any]):
        """`kind.load(<out>/<name>.npz, key)` when a cache with this key exists, else `build()` saved there: the one
        reuse rule of the Studies' preprocessing."""
        path = self.out / f"{name}.npz"
        got = kind.load(path, key)
        if got is None:
            got = build()
            got.save(path, key)
        return got

    def prepared(self, kind, name: str, store, ids: list, settings: dict, build: Callable[[], Any],
                 anatomy: bool = False, real: bool = False):
        """A store's cines preprocessed (`build()`) through `cached`, keyed by the settings, the cines and the store's
        content, and with `anatomy` by what found the heart (`anatomy_key`): one key rule for every preprocessing."""
        key = dict(settings, ids=ids, cohort=store.fingerprint())
        if anatomy:
            key.update(anatomy=self.p["anatomy"], segmenter=self.anatomy_key(real=real))
        return self.cached(kind, name, key, build)

    def train(self, finish=None, rows: int | None = None) -> list[dict]:
        """What `cmrlib fit` runs: the method's models trained (`finish(learn, path)` exports each and gives its
        validation loss; `rows`: the first rows only, where a method trains rows in sequence), then its Predictor;
        the training log."""
        raise NotImplementedError

    def targets(self, checks: list[tuple[str, float, str, float]]) -> pd.DataFrame:
        """The notebook's last step: its checks (`Notebook.targets`), its headline tables and its timings, written."""
        t = self.nb.targets(checks)
        if self.GLANCE:
            self.nb.glance(dict(self.GLANCE, notebook=self.number))
        for name, title, table in self.headline_tables():
            self.nb.headline(name, title, table)
        self.nb.save_timings()
        return t

    # the notebook's row of the README's results table: method, headline, paper (the paper's own number), and per
    # cell ("phantom", "real") the targets it shows, each (label, regular expression over the target's name)
    GLANCE: ClassVar[dict[str, Any]] = {}

    CAPTIONS: ClassVar[dict[str, str]] = {}  # figure name -> its caption (the method's figures.CAPTIONS)

    def figure(self, fig, name: str, key: str | None = None, **fields) -> Path:
        """A figure written with its caption from `CAPTIONS` (under `key`, by default its name), kept beside the
        drawing it describes (`fields` fill its `{n}`-style blanks)."""
        caption = self.CAPTIONS[key or name]
        return self.nb.figure(fig, name, caption.format(**fields) if fields else caption)

    PAPER_FIGURES: ClassVar[tuple[str, ...]] = ()  # the paper-style figures `paper_figures` draws from a run

    @classmethod
    def paper_figures(cls, run_dir: Path) -> Iterator[tuple[str, Any]]:
        """(name, figure) of each paper-style figure this notebook's tables in `run_dir` allow (notebook 09 draws
        them from the run folder alone); none unless a Study lists some in `PAPER_FIGURES`."""
        return iter(())

    def headline_tables(self) -> Iterator[tuple[str, str, pd.DataFrame | None]]:
        """(table file, title, table) for the run's report, beside the paper's numbers; a table of None is one this
        notebook already wrote under that name. None unless a method lists some."""
        return iter(())
