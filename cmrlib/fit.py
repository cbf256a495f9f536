"""`cmrlib fit METHOD --profile P`: a method's training as a command, with the notebook's parameters for the
profile and the library functions the notebook calls, alone or under `accelerate launch` (N GPUs, or N CPU
processes over gloo; `cmrlib.distributed`). The models and `fit.json` (settings, processes, seconds, final
validation loss) go to `<run>/fit/<method>/`; process 0 writes them.

    cmrlib fit edes --profile smoke --run runs/smoke
    accelerate launch --multi_gpu --num_processes 4 -m cmrlib fit heartmae --profile paper --run runs/paper

A method's fit needs the run's cohort (notebook 00) and, for HeartMAE, its cines (built here when missing).
CUSSP and SSLHF train in their notebooks only.
"""
from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Any, Callable

from . import runner
from .store import CohortStore
from .utils import atomic_write_json, package_versions, seed_everything, seed_for

# torch, fastai and the methods are imported by the steps that train: a command that cannot start says so in one
# line without loading them


class FitError(ValueError):
    """A fit cannot start: unknown method, or the run folder lacks what the method trains on."""


def _valid_loss(learn) -> float:
    """The loss over the whole validation set, in this process (the data-parallel callback removed)."""
    from .distributed import single

    with learn.no_bar(), learn.no_logging():
        return float(single(learn).validate()[0])


def _edes(store: CohortStore, p: dict, out: Path) -> list[dict]:
    """Notebook 02's training: every method in `methods` on the same sequences, seed and schedule."""
    from .methods import edes

    items = [it for split in ("train", "valid")
             for it in edes.seq_items(store, store.select(p["views"], split, p["max_cines"], interleave=True),
                                      p["size"], split, zoom=p["zoom"])]
    model_kw = {k: p[k] for k in ("widths", "blocks", "hidden", "bidirectional", "cyclic", "motion", "dropout")}
    rows = []
    for m in p["methods"]:
        dls = edes.dataloaders(items, bs=p["bs"], delta=p["delta"], upsilon=p["upsilon"], seed=p["seed"])
        learn, row = edes.fit(dls, m, p["epochs"], p["lr"], p["seed"], beta=p["beta"], alpha=p["alpha"], path=out,
                              **model_kw)
        rows.append(dict(row, valid_loss=_valid_loss(learn), model=_save(learn, out / edes.model_file(m))))
    return rows


def _segmentation(store: CohortStore, p: dict, out: Path) -> list[dict]:
    """Notebook 01's phantom models (SAX; 2CH + 4CH), trained then calibrated on validation cines as it does."""
    from .methods import segmentation as seg

    data_kw = dict(size=p["size"], spacing=p["spacing_mm"], bs=p["bs"], seed=p["seed"], max_frames=p["max_frames"],
                   progress=False)
    rows = []
    for name, views, epochs, balance in (("sax", ["SAX"], p["epochs_sax"], False),
                                         ("lax", ["2CH", "4CH"], p["epochs_lax"], p["balance_lax"])):
        aug = seg.recipe(p["augmentation"][name])
        dls = seg.dataloaders(store, views, frame_step=p["frame_step"], **data_kw, **aug)
        t0 = time.perf_counter()
        learn = seg.fit(dls, epochs, p["lr"], balance=balance, width=p["width"], pretrained=p["pretrained"],
                        bf16=p["bf16"])
        ids = store.select(views, "valid", p["calibrate_cines"]) if p["calibrate_cines"] else []
        if ids:
            seg.as_model(learn).log_prior = seg.calibrate_prior(learn, store, ids, progress=False)[0]
        rows.append(dict(model=name, train_s=time.perf_counter() - t0, valid_loss=_valid_loss(learn),
                         file=_save(learn, seg.model_file(out, name.upper()))))
    return rows


def _mvnet(store: CohortStore, p: dict, out: Path) -> list[dict]:
    """Notebook 03's trackers (convention A, stage 1 then stage 2, per view). Their validation loss is the one
    `mvnet.fit` logs: with several processes, process 0's share of the validation cines."""
    from .methods import mvnet as mv

    from .distributed import rank
    from .learn import config_from

    cfg = config_from(mv.MVConfig, p, smooth=None if p["smooth"] == "valid" else p["smooth"])
    rows = []
    for v in p["views"]:
        train, valid = (mv.tracks_from_cines(mv.load_cines(store, v, s, p["max_train"]), "obsA")
                        for s in ("train", "valid"))
        _, log = mv.fit(train, valid, cfg, v, out if rank() == 0 else None, "A", quiet=True)
        rows += [dict(r, model=f"{v} stage {r['stage']}") for r in log.to_dict("records")]
    return rows


def _heartmae(store: CohortStore, p: dict, out: Path) -> list[dict]:
    """Notebook 06's pretraining of the four masked autoencoders (`rows` of them), on the run's cached cines."""
    from .methods import heartmae as hm

    from .distributed import rank
    from .learn import config_from

    cfg = config_from(hm.HeartMAEConfig, p)
    prep = dict(load=p["load"], cycle=p["cycle"], sax_k=p["sax_slices"], sigma_mm=p["sigma_mm"])
    ids = store.select(view=["SAX", "2CH", "3CH", "4CH"])
    cache = Path(p["run_dir"]) / "06" / "cines.npz"
    cines = hm.CineSet.load(cache, dict(prep, ids=ids, cohort=store.fingerprint()))
    if cines is None:  # notebook 06 has not cached them in this run
        cines = hm.preprocess_store(store, ids, progress=False, **prep)
    mean, std = hm.intensity_stats(cines.take(cines.rows("train")))
    models, rows = {}, []
    for row in hm.FAMILY:
        init = hm.FAMILY[row]["init"]
        if init is not None and init not in models:
            continue
        models[row], s = hm.pretrain(row, cines, cfg, mean, std, out, models.get(init))
        s.pop("history")
        if rank() == 0:
            hm.save(models[row], cfg, out / f"{row}.pt", mean=mean, std=std, summary=s)
        rows.append(s)
        if len(rows) == p["fit_rows"]:
            break
    return rows


FITS: dict[str, tuple[str, Callable[[CohortStore, dict, Path], list[dict]]]] = {
    "segmentation": ("01", _segmentation), "edes": ("02", _edes), "mvnet": ("03", _mvnet), "heartmae": ("06", _heartmae)}


@contextlib.contextmanager
def _quiet():
    """Progress bars and per-epoch tables from process 0 only (the others would print them again)."""
    from .distributed import rank

    if rank() == 0:
        yield
    else:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield


def _save(learn, path: Path) -> str:
    """Export from process 0 only; the file name."""
    from .distributed import rank
    from .learn import export

    if rank() == 0:
        export(learn, path)
    return path.name


def fit(method: str, profile: str = "smoke", run_dir: str | Path | None = None, overrides: dict | None = None,
        out: str | Path | None = None, fit_rows: int | None = None) -> dict[str, Any]:
    """Train `method` with the profile's parameters for its notebook (plus overrides) on the run's cohort. Every
    check that needs no training (method, rows, folders, parameter values, the cohort) comes first, in one line."""
    if method not in FITS:
        raise FitError(f"unknown method {method!r}; `cmrlib fit` trains: {', '.join(FITS)} (the other methods train "
                       f"in their notebooks)")
    if fit_rows is not None and fit_rows < 1:
        raise FitError(f"--rows must be at least 1, got {fit_rows}")
    number, train = FITS[method]
    p = runner.parameters(number, profile, overrides)
    run = Path(run_dir or runner.ROOT / "runs" / p["profile"])
    p.update(run_dir=str(run), fit_rows=fit_rows)
    out = Path(out or run / "fit" / method)
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
    import torch

    from .distributed import data_parallel, rank, world_size

    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed_for(p["seed"], "fit", method))
    if p.get("threads"):
        torch.set_num_threads(int(p["threads"]))
    t0 = time.perf_counter()
    with data_parallel(), _quiet():
        rows = train(store, p, out)
    record = dict(method=method, profile=p["profile"], processes=world_size(), batch_per_process=p.get("bs"),
                  seconds=round(time.perf_counter() - t0, 2), rows=rows, versions=package_versions(),
                  parameters=runner.path_references(p, {}))  # a user's data paths as $VAR references, as run.json
    if rank() == 0:
        atomic_write_json(out / "fit.json", record)
    return record
