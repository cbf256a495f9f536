"""What every notebook does around its method: its folders, seed and threads in one call, atomic tables, step
timings and the developer targets check, so a notebook's cells keep to the science.

    nb = results.setup("01", run_dir, figures_dir, seed, threads=threads)
    with nb.timer("train SAX"):
        ...
    nb.table(scores, "scores")                       # -> <run_dir>/01/scores.csv, atomically
    nb.figure(fig, "01_cases", "best, median and worst test frame")  # -> figures_dir, caption indexed
    nb.targets([("phantom SAX LV Dice", 0.94, ">=", 0.93),
                Target("LVEF MAE minus the peer's", -0.4, "<", 0.0, low=-0.9, high=0.1, n=15, test="paired bootstrap")])
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .plots import save_figure
from .runfiles import check_tree, read_json, writable
from .store import CohortStore
from .utils import atomic_write_json, atomic_write_text, git_commit, seed_everything

ROOT = Path(__file__).resolve().parent.parent  # the project: relative run and figure folders start here
GOALS = (">=", "<=", "<", ">", "within")  # how a value meets its target ("within": |value| <= target)
TIMING_COLUMNS = ("seconds", "sec", "sec_per_seq", "sec_per_cine", "train_s", "wall_s", "mean_fit_time", "std_fit_time",
                  "mean_score_time", "std_score_time")  # differ run to run
TIMED_TARGET = r"wall time|s per |seconds"  # a target row that times something (its value differs run to run)
HEADLINES = "headlines.json"  # in a notebook's folder: {table file: title} of the tables the run's report shows
GLANCE = "glance.json"  # in a notebook's folder: its row of the README's results table (`Notebook.glance`)


def project_path(path: str | Path) -> Path:
    """A relative path taken from the project root, not the kernel's working folder: a notebook opened in
    JupyterLab (kernel in notebooks/) writes where `cmrlib run` does."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p


TARGET_COLUMNS = ["figure", "value", "low", "high", "n", "test", "goal", "target", "met"]
ESTIMATE = "estimate"  # a target row's test when it carries no interval: the estimate alone decides


@dataclass(frozen=True)
class Target:
    """One developer target: the estimate, its goal and threshold, and what backs it: its interval (low, high),
    how many units (patients, folds, cines) it stands on and the test that gave the interval."""

    figure: str
    value: float
    goal: str
    target: float
    low: float = np.nan
    high: float = np.nan
    n: float = np.nan
    test: str = ESTIMATE

    @property
    def met(self) -> bool:
        """`meets` on this row: the one rule every notebook and the report use."""
        return meets(self.value, self.goal, self.target, self.low, self.high)


def meets(value: float, goal: str, target: float, low: float = np.nan, high: float = np.nan) -> bool:
    """Whether a measured value meets its target under `goal` (one of GOALS); NaN never does. With an interval
    (low, high), all of it must: a difference whose CI crosses the threshold is not met."""
    if goal not in GOALS:
        raise ValueError(f"unknown goal {goal!r}; one of {GOALS}")
    if value is None or not np.isfinite(value):
        return False
    has = [x for x in (low, high) if x is not None and np.isfinite(x)]
    ends = [value, *has]
    check = {">=": lambda v: v >= target, "<=": lambda v: v <= target, "<": lambda v: v < target,
             ">": lambda v: v > target, "within": lambda v: abs(v) <= target}[goal]
    return bool(all(check(v) for v in ends))


def mean_target(figure: str, values, goal: str, target: float, over: str = "patients", seed: int | None = None
                ) -> Target:
    """A target on a mean over units (patients, cines; NaN left out), with its 95 % interval (a t-interval, or with
    `seed` a percentile bootstrap over the units) and count: met only when the whole interval is, so a few patients
    cannot meet a threshold their spread straddles."""
    from .stats import mean_bootstrap, mean_ci

    v = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    mean, low, high = mean_ci(v) if seed is None else mean_bootstrap(v, seed=seed)
    test = f"t-interval over {over}, 95 %" if seed is None else f"{over.removesuffix('s')} bootstrap, 95 %"
    return Target(figure, float(mean), goal, target, float(low), float(high), n=len(v), test=test)


def share_target(figure: str, share: float, n: int, goal: str, target: float, percent: bool = False,
                 over: str = "units") -> Target:
    """A target on a share of n units (a fraction, as is `target`), with its Clopper-Pearson 95 % interval: met only
    when the whole interval is; `percent`: value, target and interval written as percentages."""
    from scipy.stats import binomtest

    ci, k = binomtest(int(round(share * n)), int(n)).proportion_ci(0.95), 100.0 if percent else 1.0
    return Target(figure, float(share) * k, goal, target * k, float(ci.low) * k, float(ci.high) * k, n=int(n),
                  test=f"Clopper-Pearson interval over {over}, 95 %")


def targets_frame(rows) -> pd.DataFrame:
    """Target rows (`Target`s, or (figure, value, goal, target) tuples) as one table whose `met` is `meets`'."""
    ts = [r if isinstance(r, Target) else Target(*r) for r in rows]
    return pd.DataFrame([dict(figure=t.figure, value=t.value, low=t.low, high=t.high, n=t.n, test=t.test,
                              goal=t.goal, target=t.target, met=t.met) for t in ts], columns=TARGET_COLUMNS)


def recomputed(df: pd.DataFrame) -> pd.DataFrame:
    """A written targets table with `met` computed again by `meets` (a table from before intervals gets empty
    interval, n and test columns): what the report shows, whatever the file says."""
    df = df.copy()
    for c, fill in (("low", np.nan), ("high", np.nan), ("n", np.nan), ("test", ESTIMATE)):
        df[c] = df[c] if c in df else fill
    num = lambda c: pd.to_numeric(df[c], errors="coerce")
    df["met"] = [meets(v, g, t, lo, hi) for v, g, t, lo, hi in
                 zip(num("value"), df["goal"], num("target"), num("low"), num("high"), strict=True)]
    return df[TARGET_COLUMNS]


@dataclass
class Notebook:
    """One notebook's run: where it writes, what it has timed."""

    number: str
    run_dir: Path
    figures_dir: Path
    seed: int
    timings: dict[str, float] = field(default_factory=dict)
    folder: Path | None = None  # where it writes instead of `<run_dir>/<number>` (`cmrlib fit`'s own folder)
    predictors: Path | None = None  # where its Predictor goes instead of `<run_dir>/predictors`

    @property
    def out(self) -> Path:
        """The notebook's own folder, `<run_dir>/<number>` unless `folder` is set."""
        return self.folder or self.run_dir / self.number

    @property
    def root(self) -> Path:
        """The folder everything this notebook writes must stay in: the run folder (`cmrlib fit`: its own folder)."""
        return self.folder or self.run_dir

    def guard(self) -> None:
        """Refuse a run folder whose folders this notebook writes into are, or hold, links that lead out of it (a
        received run folder can carry them): models, tables and Predictors never land elsewhere, and replacing one
        never deletes anything there."""
        if self.folder is None:
            check_tree(self.root, self.out, self.predictors or self.run_dir / "predictors")
        else:  # `cmrlib fit`'s own folder (the user's: it may hold anything): where the fit writes in it
            check_tree(self.root, self.out / "models")
        check_tree(self.run_dir, self.run_dir / "table1", self.run_dir / "labels")  # the run's shared caches

    def _write(self, path: Path) -> Path:
        """`path` once it is a place inside the run folder, no link (`runfiles.writable`)."""
        writable(self.root, path)
        return path

    def cohort(self) -> CohortStore:
        """The run's cohort store (written by notebook 00); a clear error when it is missing."""
        store = CohortStore(self.run_dir / "cohort")
        if not len(store):
            raise FileNotFoundError(f"{store.root}: no cohort (run notebook 00 with the same run_dir first)")
        return store

    def table(self, df: pd.DataFrame, name: str, index: bool = False) -> Path:
        """Write a result table atomically as `<out>/<name>.csv`."""
        name = name if name.endswith(".csv") else f"{name}.csv"
        return atomic_write_text(self._write(self.out / name), df.to_csv(index=index))

    def kept(self, df: pd.DataFrame, name: str, index: bool = False) -> pd.DataFrame:
        """`df`, written as `<out>/<name>.csv` (`table`) on its way: a step's table and its write in one call."""
        self.table(df, name, index=index)
        return df

    def tables(self, named: dict[str, pd.DataFrame], index: tuple[str, ...] = ()) -> None:
        """Write several result tables (`table`) from name -> table, those named in `index` with their index."""
        for name, df in named.items():
            self.table(df, name, index=name in index)

    def forget(self, *names: str) -> None:
        """Remove the tables `<out>/<name>.csv` an earlier run wrote for a step this run skips, so that no headline or
        report reads them as this run's."""
        for name in names:
            self._write(self.out / (name if name.endswith(".csv") else f"{name}.csv")).unlink(missing_ok=True)

    def headline(self, name: str, title: str, df: pd.DataFrame | None = None) -> Path:
        """List `<out>/<name>.csv` (written now when `df` is given) under `title` in `<out>/headlines.json`, the
        tables the run's report shows from this notebook, in the order listed, without knowing its method."""
        csv = name if name.endswith(".csv") else f"{name}.csv"
        path = self.table(df, csv) if df is not None else self.out / csv
        index = self._write(self.out / HEADLINES)
        known = read_json(self.root, index) if index.exists() else {}
        known[path.name] = title
        atomic_write_json(index, known)
        return path

    def glance(self, row: dict) -> Path:
        """Write `<out>/glance.json`: the notebook's row of the README's results table (method, headline, the paper's
        number, and the targets whose values its phantom and real cells show: `report.glance`)."""
        return atomic_write_json(self._write(self.out / GLANCE), row)

    @contextlib.contextmanager
    def timer(self, step: str):
        """Time a step (seconds added to `timings`, written by `save_timings`)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - t0

    def figure(self, fig, name: str, caption: str, vector: str | None = None, close: bool = False) -> Path:
        """Save a figure (`plots.save_figure`) and record its caption in `<out>/figures.json` for the index
        notebook 09 writes."""
        path = save_figure(fig, self.figures_dir, name, close=close, vector=vector)
        index = self._write(self.out / "figures.json")
        known = read_json(self.root, index) if index.exists() else {}
        known[path.stem] = dict(caption=caption, notebook=self.number, file=str(path.name))
        atomic_write_json(index, dict(sorted(known.items())))
        return path

    def save_timings(self) -> pd.Series:
        s = pd.Series(self.timings, name="seconds", dtype=float)
        self.table(s.rename_axis("step").reset_index(), "timings")
        return s

    def provenance(self, store: CohortStore, real_check: str | None = None, **more) -> dict:
        """Where a model comes from, for its Predictor: the run, notebook, commit, seed and the cohort it was
        trained on ('phantom': a demonstration, never a clinical estimate); `real_check`: the real-data check
        behind its numbers (None: none)."""
        ident = store.identity() or {}
        source = "phantom" if (store.root / "phantom.json").exists() else str(ident.get("source", "unknown"))
        return dict(run=self.run_dir.name, notebook=self.number, commit=git_commit(ROOT), seed=self.seed,
                    trained_on=source, cohort=store.fingerprint(), subjects=len(set(store.manifest().subject)),
                    real_check=real_check, created=time.strftime("%Y-%m-%d %H:%M:%S"), **more)

    def predictor(self, predictor) -> Path:
        """Write a method's Predictor into the run's `predictors/` folder (what `cmrlib analyse` reads)."""
        from .predictor import file_name

        folder = self.predictors or self.run_dir / "predictors"
        return predictor.save(self._write(folder / file_name(predictor.method)))

    def targets(self, checks: list) -> pd.DataFrame:
        """The developer targets (`Target`s, or (figure, value, goal, target) tuples) with `met` from `meets`,
        written as `<out>/targets.csv`."""
        df = targets_frame(checks)
        self.table(df, "targets")
        return df


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def use_threads(threads: int) -> None:
    """torch, BLAS and OpenMP on `threads` threads whatever environment the kernel inherited or gets later (a Dask
    nanny leaves OMP/OPENBLAS/MKL_NUM_THREADS=1 in the process that starts it, for good): a fit through BLAS differs
    in its last digits with the thread count, so a table depends on `threads` and nothing else. The BLAS and OpenMP
    libraries are loaded first (each reads those variables once, as it loads), then limited."""
    import scipy.linalg  # noqa: F401  scipy's OpenBLAS
    import sklearn.decomposition  # noqa: F401  scikit-learn's OpenMP
    import torch
    from threadpoolctl import threadpool_limits

    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})  # for any other library loaded later
    threadpool_limits(threads)
    torch.set_num_threads(threads)


def setup(number: str, run_dir: str | Path, figures_dir: str | Path, seed: int, threads: int | None = None
          ) -> Notebook:
    """Start a notebook: folders resolved from the project root and created, every RNG seeded, torch's and BLAS's
    threads set, tables shown to three decimals."""
    seed_everything(int(seed))
    pd.set_option("display.precision", 3)
    if threads is not None:
        use_threads(int(threads))
    nb = Notebook(str(number), project_path(run_dir), project_path(figures_dir), int(seed))
    nb.guard()
    nb.out.mkdir(parents=True, exist_ok=True)
    nb.figures_dir.mkdir(parents=True, exist_ok=True)
    return nb


def compare_runs(a: str | Path, b: str | Path, ignore: tuple[str, ...] = TIMING_COLUMNS) -> pd.DataFrame:
    """Every result table (CSV) two run folders do not share identically, timing columns, timed target rows and
    timings.csv aside, and every notebook's list of headline tables: one row per table with what differs ('only in
    a', 'only in b', 'columns', 'shape', 'headlines', or the differing columns). Empty when a refactor left every
    result as it was."""
    a, b = Path(a), Path(b)
    tables = lambda root: {p.relative_to(root) for p in root.rglob("*.csv")
                           if "cohort" not in p.relative_to(root).parts and p.name != "timings.csv"}
    ta, tb = tables(a), tables(b)
    rows = [dict(table=str(t), differs="only in a") for t in sorted(ta - tb)]
    rows += [dict(table=str(t), differs="only in b") for t in sorted(tb - ta)]
    for t in sorted(ta & tb):
        da, db = pd.read_csv(a / t), pd.read_csv(b / t)
        da, db = (d.drop(columns=[c for c in ignore if c in d.columns]) for d in (da, db))
        if t.name == "targets.csv" and "figure" in da and "figure" in db:
            da, db = (d[~d["figure"].str.contains(TIMED_TARGET)].reset_index(drop=True) for d in (da, db))
        if list(da.columns) != list(db.columns):
            rows.append(dict(table=str(t), differs="columns"))
        elif da.shape != db.shape:
            rows.append(dict(table=str(t), differs="shape"))
        elif not da.equals(db):
            cols = [c for c in da.columns if not da[c].equals(db[c])]
            rows.append(dict(table=str(t), differs=", ".join(cols)))
    lists = lambda root: {p.relative_to(root): json.loads(p.read_text()) for p in root.glob("*/headlines.json")}
    ha, hb = lists(a), lists(b)  # the tables each notebook lists for the report
    rows += [dict(table=str(t), differs="headlines") for t in sorted(set(ha) | set(hb)) if ha.get(t) != hb.get(t)]
    return pd.DataFrame(rows, columns=["table", "differs"])
