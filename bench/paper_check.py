"""The `paper` profile proven on the CPU: every notebook 00-09 at the papers' networks, widths, input sizes, frames,
patch sizes, batches, preprocessing and augmentation, with only the cohort sizes and schedule lengths cut (SHORT
below). A shape error in a full-width network, a step that assumes
UK Biobank's cohort, or a cache that grows with it meets us here instead of on rented hardware.

Usage: python bench/paper_check.py OUT [--only 00 01 ...] [--data DIR] [--fits [METHOD ...]]
Each notebook runs on its own (`cmrlib run --profile OUT/paper_check.yaml --only NN --out OUT/run`), so one that
fails is a row with its error and the ones after it still run; OUT/paper_check.json holds every row (notebook,
status, minutes, peak memory, error) and this prints them as a table. Without --data the real-patient sections skip
(their reasons are in the notebooks); with it they run at the paper's sizes too.

`--fits` instead trains each method with `cmrlib fit METHOD --profile OUT/paper_check.yaml` on the run's cohort twice:
in one process at the profile's batches B, and under `accelerate launch` in two CPU processes (gloo) at B/2 each
(every batch its Study names in `BATCHES`), and compares the final validation losses (OUT/paper_fits.json, a
second table).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cmrlib import runner  # noqa: E402
from cmrlib.utils import atomic_write_json  # noqa: E402
from cmrlib.distributed import launch_command  # noqa: E402
from cmrlib.fit import row_name  # noqa: E402

NOTEBOOKS = [f"{i:02d}" for i in range(10)]

# What is cut, and only this: subjects, cines, frames per epoch, epochs, steps, folds, draws, resamples, searches.
# The machine's own settings follow this machine (2 cores: 2 threads, 2 Dask workers).
SHORT = {
    "common": dict(workers=2),
    "00": dict(n_subjects=24, realism_subjects=0, realism_acdc=4),
    "01": dict(threads=2, epochs_sax=1, epochs_lax=1, max_frames=48, calibrate_cines=1, max_test_cines=1,
               acdc_limit=4, epochs_acdc=1, n_finetune=2, epochs_finetune=1, epochs_lax_real=1, epochs_sax_real=1),
    "02": dict(threads=2, epochs=1, max_cines=2, real_epochs=1, real_folds=3, n_show=2),
    "03": dict(threads=2, epochs1=1, epochs2=1, max_train=3, max_test=2, eval_splits=["valid", "test"],
               variability_epochs=[1, 1], epochs_real=1),
    "04": dict(threads=2, anatomy="labels", mr_subjects=24, mr_config={"p_mr": [0.25, 0.15, 0.1]}, pool_subjects=8,
               budgets=[4], budget_draws=1, eval_splits=["valid", "test"], n_boot=50, rf_iter=3, pretrain_steps=3,
               epochs=1, siam_epochs=1, cnn_epochs=1),
    "05": dict(threads=2, anatomy="labels", hf_patients=8, n_folds=3, max_slices=1, curve_fractions=[],
               rows=["SSLHF", "3D ResNet-50", "3D DenseNet-121"], real_rows=["SSLHF"], proxy_steps=2,
               real_proxy_steps=2, epochs=1, min_epochs=1, patience=1, lrs=[0.00001], bs=2),
    "06": dict(threads=2, sax_slices=1, crops=1, clips=1, epochs_base=1, epochs=1, warmup_epochs=0, repeats=1,
               probe_epochs=2, n_boot=50, n_show=1, real_epochs=1),
    "07": dict(real_patients=False),
    "08": dict(threads=2, n_perm=50),
}
# Cut beyond sizes and schedules, each for a stated reason:
# - 04 and 05 find the anatomy from the phantom's own masks (`anatomy: labels`): a segmenter trained for one epoch
#   finds no valve or ventricle to crop round; the crops, patches and networks are the paper's either way.
# - 04's MR subjects are enriched (as the smoke profile's) so a cohort this small holds MR in every split.
# - 05's 8 heart-failure patients: the fewest of the seed's draw with both classes in each of 3 folds.
# - 05 runs SSLHF and the two 3D baselines: rows A-D are SSLHF's network with one proxy transform left out.
# - 05's classifiers train at batch 2, not the paper's 4: the 3D ResNet-50 at batch 4 saves about 35 GB of
#   activations for its backward pass (bench/paper_cost.py), beyond this machine's 24 GiB; at 4 the notebook's
#   kernel is killed for memory. SSLHF's classifier head (BatchNorm1d) needs at least 2. The proxies keep batch 4.
# - 06 reads each cine's features from one crop of one clip (the paper's 3 x 2 is six passes of the same ViT-B at
#   the same size: with one pass the feature step takes 10.2 min on this CPU for five encoders and 72 cines,
#   06/timings.csv of the check at 2fd48f8).
# - 07's real SAX agreement segments 65 cines at every frame (notebook 01's models; no network of its own).


def profile(out: Path) -> Path:
    """The paper profile with SHORT laid over its sections, written as OUT/paper_check.yaml (plain YAML)."""
    prof = copy.deepcopy(runner.load_profile("paper"))
    for section, values in SHORT.items():
        prof.setdefault(section, {}).update(values)
    path = out / "paper_check.yaml"
    path.write_text("# bench/paper_check.py: the paper profile, cohort sizes and schedules cut (SHORT)\n"
                    + yaml.safe_dump(prof, sort_keys=False))
    return path


# a fresh parent per notebook, so the largest process it reaped (the kernel, a Dask worker) is that notebook's
PEAK = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def run_notebook(nb: str, prof: Path, out: Path, data: str | None) -> dict:
    """One notebook in a child `cmrlib run`: its status, minutes, the peak memory of its largest process and the
    error, if any."""
    env = dict(os.environ)
    env.pop("CMRLIB_DATA", None)
    if data:
        env["CMRLIB_DATA"] = str(Path(data).resolve())
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "cmrlib", "run", "--profile", str(prof),
                           "--only", nb, "--out", str(out / "run")], cwd=ROOT, env=env, capture_output=True, text=True)
    peak_kib = int(done.stdout.strip().splitlines()[-1])
    row = dict(notebook=nb, status="ok" if done.returncode == 0 else "failed",
               minutes=round((time.perf_counter() - t0) / 60, 2), peak_gib=round(peak_kib / 2**20, 2))
    if done.returncode:
        row["error"] = last_message(done.stderr)
    return row


def last_message(stderr: str) -> str:
    """The line a failed child's stderr ends on that says something: under `accelerate launch`, torch's summary of
    the failed process (its exit code; -9 when the kernel killed it for memory) rather than the banner's rules."""
    lines = [x.strip() for x in stderr.splitlines() if any(ch.isalnum() for ch in x)]
    said = [x for x in lines if "exitcode" in x or "Error" in x or "Killed" in x] or lines or ["(no message)"]
    return said[-1][:400]


FIT_METHODS = ["segmentation", "edes", "mvnet", "cussp", "sslhf", "heartmae"]
# a method's fit in this check, beyond SHORT: MAE-ViT-B stands for HeartMAE's family (the other rows are the same
# network); SSLHF's own classifier stands for its rows (the 3D ResNet-50 at the batch it splits, 2 x 2, and the
# one-process run at 4 need more than this machine's memory; notebook 05 trains all three at batch 2)
FIT_EXTRA = {"heartmae": ["--rows", "1"], "sslhf": ["-p", "rows=[SSLHF]", "-p", "bs=4"]}


def fit_once(method: str, prof: Path, out: Path, processes: int) -> dict:
    """`cmrlib fit` in one process, or in two (accelerate, gloo) at half of each batch the Study names
    (`Study.BATCHES`); its record, or the error it stopped with."""
    from cmrlib.predictor import study_class

    study, extra = study_class(method), list(FIT_EXTRA.get(method, []))
    sets = runner.parse_overrides([v for k, v in zip(extra[::2], extra[1::2]) if k == "-p"])
    base = study.parameters(runner.load_profile(str(prof)), prof.stem, sets)
    for key in study.BATCHES:
        extra += ["-p", f"{key}={max(int(base[key]) // processes, 1)}"]
    launch = launch_command(processes) if processes > 1 else [sys.executable, "-m"]
    where = out / "fit" / method / f"{processes}p"
    t0 = time.perf_counter()
    done = subprocess.run([*launch, "cmrlib", "fit", method, "--profile", str(prof), "--run", str(out / "run"),
                           "--out", str(where), *extra], cwd=ROOT, capture_output=True, text=True)
    row = dict(method=method, processes=processes, minutes=round((time.perf_counter() - t0) / 60, 2),
               batch_per_process={k: max(int(base[k]) // processes, 1) for k in study.BATCHES})
    if done.returncode:
        return dict(row, status="failed", error=last_message(done.stderr))
    return dict(row, status="ok", valid_losses=fit_losses(where))


def fit_losses(where: Path) -> dict[str, float]:
    """Each trained row's final validation loss in a `cmrlib fit` record, by the row's name."""
    rec = json.loads((where / "fit.json").read_text())
    return {row_name(r): r["valid_loss"] for r in rec.get("rows", []) if r.get("valid_loss") is not None}


def _batches(b) -> str:
    return ", ".join(f"{k} {v}" for k, v in b.items()) if isinstance(b, dict) else str(b)


def fits_table(rows: list[dict]) -> str:
    """One row per method and process count: the first and the last row the fit trained, with their losses."""
    head = ("| method | processes | batch per process | minutes | first row: validation loss | last row: validation "
            "loss | status |\n|---|---|---|---|---|---|---|\n")
    ends = lambda r: (list((r.get("valid_losses") or {}).items()) or [("", "")])
    return head + "\n".join(f"| {r['method']} | {r['processes']} | {_batches(r['batch_per_process'])} | "
                            f"{r['minutes']} | {_loss(ends(r)[0])} | {_loss(ends(r)[-1])} | "
                            f"{r['status']} {r.get('error', '')} |" for r in rows)


def _loss(item: tuple) -> str:
    name, loss = item
    return f"{name} {loss:.4f}" if name else ""


def table(rows: list[dict]) -> str:
    head = "| notebook | status | minutes | peak memory (GiB) | error |\n|---|---|---|---|---|\n"
    return head + "\n".join(f"| {r['notebook']} | {r['status']} | {r['minutes']} | {r['peak_gib']} | "
                            f"{r.get('error', '')} |" for r in rows)


def ensure_cohort(prof: Path, out: Path) -> None:
    """OUT/run's phantom cohort as notebook 00 makes it (`make_cohort` with the profile's section 00), when there is
    none: the fits then run where Jupyter is not installed (a GPU machine with the library's packages alone)."""
    if (out / "run" / "cohort" / "phantom.json").exists():
        return
    from cmrlib.phantom import make_cohort
    prof_d = runner.load_profile(str(prof))
    p = {**prof_d.get("common", {}), **prof_d["00"]}
    print(f"paper check: notebook 00's cohort of {p['n_subjects']} phantom subjects ...", flush=True)
    make_cohort(out / "run" / "cohort", n=int(p["n_subjects"]), seed=int(p.get("seed", 0)), n_frames=p.get("n_frames"),
                progress=False, **p["phantom_config"])


def run_fits(methods: list[str], prof: Path, out: Path, processes: list[int]) -> int:
    """Each method in each of `processes` process counts; OUT/paper_fits.json and a table."""
    ensure_cohort(prof, out)
    where = out / "paper_fits.json"
    rows = [r for r in (json.loads(where.read_text()) if where.exists() else []) if r["method"] not in methods]
    for m in methods:
        for n in processes:
            print(f"paper check: cmrlib fit {m} in {n} process(es) ...", flush=True)
            rows.append(fit_once(m, prof, out, n))
            atomic_write_json(where, rows)
            print(fits_table(rows[-1:]).splitlines()[-1], flush=True)
    print(fits_table(rows))
    return int(any(r["status"] != "ok" for r in rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="scratch folder: the profile, the run and paper_check.json")
    ap.add_argument("--only", nargs="+", default=NOTEBOOKS, choices=NOTEBOOKS)
    ap.add_argument("--data", help="real-data root for the real-patient sections (default: none, they skip)")
    ap.add_argument("--fits", nargs="*", choices=FIT_METHODS,
                    help="instead of the notebooks: train these methods (default: all) on OUT/run's cohort "
                         "(made as notebook 00 makes it when absent) in one process and in two")
    ap.add_argument("--processes", nargs="+", type=int, default=[1, 2],
                    help="with --fits: the process counts to train in (a one-GPU machine: 1)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    prof, where = profile(out), out / "paper_check.json"
    rows = [r for r in (json.loads(where.read_text()) if where.exists() else []) if r["notebook"] not in a.only]
    if a.fits is not None:
        return run_fits(a.fits or FIT_METHODS, prof, out, a.processes)
    for nb in a.only:
        print(f"paper check: notebook {nb} ...", flush=True)
        rows.append(run_notebook(nb, prof, out, a.data))
        rows.sort(key=lambda r: r["notebook"])
        atomic_write_json(where, rows)
        print(table([r for r in rows if r["notebook"] == nb]).splitlines()[-1], flush=True)
    print(table(rows))
    return int(any(r["status"] != "ok" for r in rows))


if __name__ == "__main__":
    sys.exit(main())
