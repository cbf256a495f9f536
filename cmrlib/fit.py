"""`cmrlib fit METHOD --profile P`: a method's Study trains (`Study.train`, the steps its notebook runs to make
its models) with the Study's parameters as the profile sets them, alone or under `accelerate launch` (N GPUs, or N
CPU processes over gloo; `cmrlib.distributed`). The models, the method's Predictor (segmentation, ED/ES, CUSSP and
SSLHF; MVnet's and HeartMAE's need notebook 03's inference choice and notebook 06's probes) and `fit.json`
(settings, processes, seconds, final validation loss) go to `<run>/fit/<method>/`; process 0 writes them. Every
fastai Learner a method trains splits its epochs over the processes, each at the batches its Study names
(`Study.BATCHES`).

    cmrlib fit edes --profile smoke --run runs/smoke
    accelerate launch --multi_gpu --num_processes 4 -m cmrlib fit heartmae --profile paper --run runs/paper

A method's fit needs the run's cohort (notebook 00); CUSSP and SSLHF also need the run's segmentation Predictor
(notebook 01) unless `-p anatomy=labels`.
"""
from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Any

from . import runner
from . import predictor as registry  # the one list of methods, each one's Study in cmrlib.methods
from .store import CohortStore
from .study import StudyError
from .utils import atomic_write_json, package_versions, seed_everything, seed_for

# torch, fastai and the methods are imported by the steps that train: a command that cannot start says so in one
# line without loading them


class FitError(ValueError):
    """A fit cannot start: unknown method, or the run folder lacks what the method trains on."""


def row_name(row: dict) -> str:
    """A fit row's name: its method, model, stage or row, whichever it records first (the record's rows differ)."""
    return next((str(row[k]) for k in ("method", "model", "stage", "row") if row.get(k)), "")


def _finish(learn, path: Path) -> tuple[float, str]:
    """Export from process 0 only; the loss over the whole validation set in this process (the data-parallel
    callback removed) and the file name."""
    from .distributed import rank, single
    from .learn import export

    with learn.no_bar(), learn.no_logging():
        loss = float(single(learn).validate()[0])
    if rank() == 0:
        export(learn, path)
    return loss, path.name


@contextlib.contextmanager
def _clocked(seconds: list[float]):
    """Every fastai Learner made inside appends the wall time of each epoch's training pass to `seconds` (a
    validation alone, which fastai also runs as an epoch, adds nothing)."""
    from fastai.callback.core import Callback
    from fastai.learner import defaults

    class EpochClock(Callback):
        order = 100

        def before_train(self):
            self.t0 = time.perf_counter()

        def after_train(self):
            seconds.append(round(time.perf_counter() - self.t0, 2))

    defaults.callbacks.append(EpochClock)
    try:
        yield
    finally:
        defaults.callbacks.remove(EpochClock)


def _hardware(epoch_seconds: list[float]) -> dict[str, Any]:
    """Where the fit ran and what it cost there: the GPU's name and peak memory, or the CPU threads."""
    import torch

    if torch.cuda.is_available():
        return dict(device=torch.cuda.get_device_name(), peak_gpu_mib=round(torch.cuda.max_memory_allocated() / 2**20),
                    epoch_seconds=epoch_seconds)
    return dict(device="cpu", threads=torch.get_num_threads(), epoch_seconds=epoch_seconds)


@contextlib.contextmanager
def _quiet():
    """Progress bars and per-epoch tables from process 0 only (the others would print them again)."""
    from .distributed import rank

    if rank() == 0:
        yield
    else:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield


def fit(method: str, profile: str = "smoke", run_dir: str | Path | None = None, overrides: dict | None = None,
        out: str | Path | None = None, fit_rows: int | None = None) -> dict[str, Any]:
    """Train `method` with the profile's parameters for its notebook (plus overrides) on the run's cohort. Every
    check that needs no training (method, rows, folders, parameter values, the cohort) comes first, in one line."""
    if method not in registry.METHODS:
        raise FitError(f"unknown method {method!r}; `cmrlib fit` trains: {', '.join(registry.METHODS)}")
    if fit_rows is not None and fit_rows < 1:
        raise FitError(f"--rows must be at least 1, got {fit_rows}")
    name = runner.profile_name(profile)
    # resolved once, from the folder the command runs in: the checks and the Study then read the same folders
    run = Path(run_dir or runner.ROOT / "runs" / name).resolve()
    out = Path(out or run / "fit" / method).resolve()
    for what, folder in (("--run", run), ("--out", out)):
        if folder.exists() and not folder.is_dir():
            raise FitError(f"{what} {folder.name} is a file, not a folder")
    store = CohortStore(run / "cohort")
    if not store.cines_dir.exists() or not len(store):
        raise FitError(f"{run.name}: no cohort with cines (run notebook 00 first: cmrlib run --profile {profile} "
                       f"--only 00 --out {run})")
    if not store.splits():
        raise FitError(f"{run.name}: the cohort has no train/valid/test splits (splits.csv); run notebook 00 again "
                       "on this run folder to rebuild them")
    from .distributed import data_parallel, rank, world_size
    from .predictor import study_class

    study = study_class(method)
    # one process per `accelerate` rank: no Dask workers of its own unless asked for
    one = {"workers": 1} if "workers" in study.PARAMS else {}
    try:
        p = study.parameters(runner.load_profile(profile), name, {**one, **(overrides or {})})
    except StudyError as e:
        raise FitError(str(e)) from None
    p.update(run_dir=str(run), figures_dir=str(out / "figures"))
    t0, epochs = time.perf_counter(), []
    with data_parallel(), _quiet(), _clocked(epochs):
        s = study(p, out=out)
        seed_everything(seed_for(p["seed"], "fit", method))
        rows = s.train(_finish, fit_rows)
    # parameters: a user's data paths as $VAR references, as run.json holds them
    record = dict(method=method, profile=name, processes=world_size(),
                  batch_per_process={k: p[k] for k in study.BATCHES}, seconds=round(time.perf_counter() - t0, 2),
                  hardware=_hardware(epochs), rows=rows,
                  versions=package_versions(), parameters=runner.path_references(p, {}))
    if rank() == 0:
        atomic_write_json(out / "fit.json", record)
    return record
