"""Scale-out: strong scaling of ingest and of segmentation inference over 1 and 2 Dask workers (cines/s), Dask's
overhead per task, a one-million-row cohort manifest (open, select a split, append 10,000 rows, peak memory), and
a projection to UK Biobank (65,000 subjects, 1 M cines) from the measured per-cine costs.

Usage: python bench/bench_scale.py [ingest|segment|overhead|manifest|project|all]   (default: all).
Ingest and inference use the two real UK-Biobank-style 4CH cines (50 frames) under $CMRLIB_DATA/ukbb-demo-lax, each
copied into many subject folders, so every cine is a real 50-frame series; without them those rows say so. Each
configuration's Dask cluster is started before its clock (start-up is its own row). On a shared 2-core machine the
2-worker rows are pessimistic.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from child import child, main

N_SUBJECTS = 32          # 4CH subjects ingested per configuration
N_SEGMENT = 24           # cines segmented per configuration
N_TASKS = 2000           # empty tasks timed for Dask's overhead
N_ROWS = 1_000_000       # manifest rows (UK Biobank's cines)
BATCH = 10_000           # rows appended at once
UKB = dict(subjects=65_000, cines=1_000_000, epoch_clips=370_000)  # HeartMAE pretrained on 370,000 cines
NODES = {"1 node x 2 cores": 2, "1 node x 64 cores": 64, "16 nodes x 64 cores": 1024}
A100 = dict(tflops=312.0, utilisation=0.4)  # bf16 dense peak, and a typical share of it reached by ViT training


def _lax_root() -> Path | None:
    from cmrlib.utils import data_root
    root = data_root()
    p = root / "ukbb-demo-lax" if root else None
    return p if p and p.exists() else None


def _copied_subjects(src: Path, dst: Path, n: int) -> Path:
    """`n` subject folders, each holding a copy of one of the real 4CH cines (NIfTI source layout)."""
    cines = sorted(src.glob("*/la_4ch.nii.gz"))
    for i in range(n):
        d = dst / f"s{i:04d}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cines[i % len(cines)], d / "la_4ch.nii.gz")
    return dst


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _segmenter(width: float, size: int):
    """An untrained TernausNet11 of this width on a size x size grid at 1.8 mm (the weights do not change its speed)."""
    import torch

    from cmrlib.data import FrameGeometry
    from cmrlib.models import unet11
    torch.manual_seed(0)
    model = unet11(n_classes=6, width=width).eval()
    model.geometry = FrameGeometry(size=size, spacing=1.8)
    return model


def _imports() -> None:
    import cmrlib.io.batch  # noqa: F401
    import cmrlib.methods.heartmae  # noqa: F401
    import cmrlib.methods.segmentation  # noqa: F401  (what the workers run)


@contextlib.contextmanager
def warm_client(workers: int):
    """A LocalCluster whose workers have imported the library (a worker's first task would otherwise pay it)."""
    from cmrlib.dask_tasks import client
    with client("local", workers) as c:
        c.run(_imports)
        yield c


def _configs():
    """(name, scheduler argument) of each configuration: this process, then Dask with 1 and 2 workers."""
    yield "in this process", None
    for w in (1, 2):
        with warm_client(w) as c:
            yield f"Dask, {w} worker{'s' * (w > 1)}", c


def ingest_rows() -> list[dict]:
    from cmrlib.io import ingest
    src = _lax_root()
    if src is None:
        return [dict(figure="ingest scaling", value="skipped: no $CMRLIB_DATA/ukbb-demo-lax", target="")]
    out, one = [], None
    with tempfile.TemporaryDirectory() as tmp:
        subjects = _copied_subjects(src, Path(tmp) / "in", N_SUBJECTS)
        for i, (name, c) in enumerate(_configs()):
            s = _timed(lambda: ingest("nifti", subjects, Path(tmp) / f"c{i}", scheduler=c, progress=False))
            one = s if i == 1 else one
            out.append(dict(figure=f"ingest, 50-frame 4CH NIfTI cines/s ({name})", value=round(N_SUBJECTS / s, 2),
                            target=f"speed-up over 1 worker {one / s:.2f} x" if i == 2 else ""))
    return out


def segment_rows() -> list[dict]:
    import torch

    from cmrlib.io import ingest
    from cmrlib.methods.segmentation.predict import predict_store
    src = _lax_root()
    if src is None:
        return [dict(figure="segmentation scaling", value="skipped: no $CMRLIB_DATA/ukbb-demo-lax", target="")]
    model = _segmenter(0.25, 128)  # the default profile's segmenter
    out, one = [], None
    with tempfile.TemporaryDirectory() as tmp:
        store = ingest("nifti", _copied_subjects(src, Path(tmp) / "in", N_SEGMENT), Path(tmp) / "c", progress=False)
        ids = store.ids()
        torch.set_num_threads(2)
        s2 = _timed(lambda: predict_store(model, store, ids, progress=False))
        torch.set_num_threads(1)
        for i, (name, c) in enumerate(_configs()):
            s = _timed(lambda: predict_store(model, store, ids, progress=False, scheduler=c))
            one = s if i == 1 else one
            out.append(dict(figure=f"segmentation of 50-frame 4CH cines, cines/s ({name}, 1 torch thread each)",
                            value=round(len(ids) / s, 3),
                            target=f"speed-up over 1 worker {one / s:.2f} x" if i == 2 else ""))
        out.append(dict(figure="segmentation, cines/s (this process, 2 torch threads)", value=round(len(ids) / s2, 3),
                        target="the same 2 cores as threads"))
    return out


def _nothing(x):
    return x


def overhead_rows() -> list[dict]:
    from cmrlib.dask_tasks import map_tasks
    t0 = time.perf_counter()
    with warm_client(2) as c:
        up = time.perf_counter() - t0
        s = _timed(lambda: list(map_tasks(_nothing, range(N_TASKS), c, progress=False)))
    return [dict(figure="Dask LocalCluster start-up, 2 workers, library imported in each (s)", value=round(up, 2),
                 target="once per notebook or command"),
            dict(figure=f"Dask overhead per task (ms, {N_TASKS} empty tasks, 2 workers)",
                 value=round(1000 * s / N_TASKS, 2), target="vs seconds per subject or cine")]


# ---------------------------------------------------------------- a million manifest rows


def manifest_rows(n: int, start: int = 0, seed: int = 0) -> pd.DataFrame:
    """Rows as ingest writes them for UK-Biobank-like cines (15 per subject, SAX slices and long axes)."""
    r = np.random.default_rng(seed)
    i = np.arange(start, start + n)
    subject = np.char.add("ukbb", np.char.zfill((i // 15).astype(str), 7))
    view = np.array(["SAX"] * 12 + ["2CH", "3CH", "4CH"])[i % 15]
    return pd.DataFrame({
        "cine_id": np.char.add(np.char.add(subject, "_"), np.char.add(view, np.char.zfill((i % 15).astype(str), 2))),
        "subject": subject, "view": view, "source": "ukbb", "n_frames": 50, "n_slices": 1, "height": 208,
        "width": 208, "spacing_mm": "[1.8, 1.8]", "ed": 0, "es": r.integers(10, 20, n),
        "path": np.char.add(np.char.add("cines/", subject), ".zarr"), "age": r.integers(40, 80, n),
        "sex": r.choice(["F", "M"], n), "participant": subject})


def build_manifest(root: Path) -> float:
    """A store whose manifest holds N_ROWS rows, appended BATCH at a time as an ingest would; seconds taken."""
    from cmrlib.store import CohortStore
    s = CohortStore(root)
    s.cines_dir.mkdir(parents=True, exist_ok=True)
    t = _timed(lambda: [s._write_part(manifest_rows(BATCH, k)) for k in range(0, N_ROWS, BATCH)])
    subjects = sorted(set(manifest_rows(N_ROWS)["subject"]))
    splits = np.array(["train", "valid", "test"])[np.arange(len(subjects)) % 7 % 3]
    s.write_splits(dict(zip(subjects, splits)))
    old = time.time() - 60
    os.utime(s.cines_dir, (old, old))  # an unchanged cines folder: reading needs no sync
    s._stamp(s._cines_stamp())
    return t


def manifest_step(name: str) -> dict:
    """One operation on the big manifest in a fresh process: seconds and peak memory above the imports."""
    from cmrlib.store import CohortStore
    from cmrlib.utils import peak_rss_mib
    s = CohortStore(os.environ["CMRLIB_BENCH_STORE"])
    base = peak_rss_mib()
    ops = {"open": lambda: s.manifest(), "select": lambda: s.select(view="4CH", split="test"),
           "append": lambda: s._write_part(manifest_rows(BATCH, N_ROWS, seed=1))}
    sec = _timed(ops[name])
    return dict(seconds=sec, peak_mib=peak_rss_mib() - base)


def manifest_bench_rows() -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        built = build_manifest(Path(tmp))
        os.environ["CMRLIB_BENCH_STORE"] = tmp
        out.append(dict(figure=f"manifest: {N_ROWS:,} rows appended {BATCH:,} at a time (s in all)",
                        value=round(built, 1), target="parts merged every 64 appends"))
        for name, what in (("open", "open (every column)"), ("select", "select one view of one split"),
                           ("append", f"append {BATCH:,} rows")):
            r = child(__file__, name)
            out.append(dict(figure=f"manifest of {N_ROWS:,} rows: {what} (s / peak MiB)",
                            value=f"{r['seconds']:.2f} / {r['peak_mib']:.0f}", target=""))
    return out


# ---------------------------------------------------------------- UK Biobank projection


def per_cine_costs() -> dict:
    """Seconds of one core per 50-frame cine for each data-parallel step, measured here."""
    import torch

    from cmrlib.io import ingest
    from cmrlib.methods import heartmae as hm
    from cmrlib.methods.segmentation.predict import predict_store
    from cmrlib.store import CohortStore
    from bench_heartmae import cines_per_second
    src = _lax_root()
    if src is None:
        raise FileNotFoundError("no $CMRLIB_DATA/ukbb-demo-lax")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        subjects = _copied_subjects(src, Path(tmp) / "in", 8)
        t_ingest = _timed(lambda: ingest("nifti", subjects, Path(tmp) / "c", progress=False)) / 8
        store = CohortStore(Path(tmp) / "c")
        ids = store.ids()[:4]
        model = _segmenter(1.0, 224)  # the paper-size TernausNet11
        t_seg = _timed(lambda: predict_store(model, store, ids[:2], progress=False)) / 2
        t_flow = _timed(lambda: hm.data.preprocess_store(store, ids, progress=False, load=256, cycle=50)) / len(ids)
    t_feat = 2 / cines_per_second("paper", n=2, threads=1)  # ViT-B, 3 crops x 2 clips of 24 frames at 224 px
    return {"ingest (NIfTI read, checks, zarr write)": t_ingest, "segmentation (TernausNet11, width 1, 224 px)": t_seg,
            "optical flow (Farneback, 50 frames at 256 px)": t_flow, "features (ViT-B, 6 views)": t_feat}


def mae_epoch() -> dict:
    """ViT-B pretraining: a measured CPU step and its FLOPs, scaled to an epoch of 370,000 clips."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench_heartmae import SIZES, _step, step_inputs
    torch.set_num_threads(2)
    s = SIZES["paper"]
    model, opt, x, w = step_inputs("paper")
    _step(model, x, w, opt, model.size)
    sec = _timed(lambda: _step(model, x, w, opt, model.size))
    with FlopCounterMode(display=False) as fc:
        _step(model, x, w, opt, model.size)
    per_clip = fc.get_total_flops() / s["bs"]
    return dict(cpu_s=sec / s["bs"] * UKB["epoch_clips"],
                gpu_s=per_clip * UKB["epoch_clips"] / (A100["tflops"] * 1e12 * A100["utilisation"]),
                tflop_per_clip=per_clip / 1e12)


def hours(s: float) -> str:
    """A duration in the unit that reads best: minutes, hours or days."""
    if s < 3600:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:,.1f} h" if s < 2 * 86400 else f"{s / 86400:,.1f} days"


def project_rows() -> list[dict]:
    if _lax_root() is None:
        return [dict(figure="UK Biobank projection", value="skipped: no $CMRLIB_DATA/ukbb-demo-lax", target="")]
    cost = per_cine_costs()
    out = [dict(figure=f"per-cine cost, one core: {k} (s)", value=round(v, 3), target="") for k, v in cost.items()]
    for k, v in cost.items():
        wall = ", ".join(f"{n}: {hours(UKB['cines'] * v / cores)}" for n, cores in NODES.items())
        out.append(dict(figure=f"UK Biobank 1 M cines, {k}", value=wall,
                        target="projection: per-cine cost x cines / cores (perfect scaling)"))
    e = mae_epoch()
    out.append(dict(figure=f"MAE pretraining, ViT-B, one epoch of {UKB['epoch_clips']:,} clips on this CPU (2 threads)",
                     value=hours(e["cpu_s"]), target="measured step x clips"))
    out.append(dict(figure=f"MAE pretraining, ViT-B, one epoch per A100 (estimate: {e['tflop_per_clip']:.2f} TFLOP per "
                           f"clip at {A100['utilisation']:.0%} of {A100['tflops']:.0f} TFLOP/s)",
                    value=hours(e["gpu_s"]), target="no GPU here: estimate"))
    return out


def rows(which: str = "all") -> list[dict]:
    parts = {"ingest": ingest_rows, "segment": segment_rows, "overhead": overhead_rows,
             "manifest": manifest_bench_rows, "project": project_rows}
    return [r for name, fn in parts.items() if which in ("all", name) for r in fn()]


if __name__ == "__main__":
    main(rows, manifest_step)
