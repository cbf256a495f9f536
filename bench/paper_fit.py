"""The `paper` profile's training on a GPU, measured: a small phantom cohort at the paper's image size (208 px at
1.8 mm, 50 frames), then `cmrlib fit METHOD --profile paper` for each method with the paper's networks, batches and
image sizes and only the schedules shortened (epochs, steps, cohort sizes: SHORT below), so each fit takes minutes.
Every fit writes its `fit.json` (seconds, device, peak GPU memory, training seconds per epoch); this prints one table.

Usage: python bench/paper_fit.py OUT [--subjects 48] [--methods segmentation edes ...] [--profile paper]
OUT is a scratch folder (its cohort is made there and reused). It runs on a CPU too, slowly: `--profile smoke`
checks the script itself in a minute.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cmrlib import runner  # noqa: E402
from cmrlib.fit import METHODS, fit  # noqa: E402
from cmrlib.utils import atomic_write_json  # noqa: E402

# the schedule a measurement needs, not the paper's: every network, batch and input size stays the profile's
SHORT = {
    "segmentation": dict(epochs_sax=2, epochs_lax=2),
    "edes": dict(epochs=2),
    "mvnet": dict(epochs1=2, epochs2=2),
    "heartmae": dict(epochs_base=2, warmup_epochs=1),
    "cussp": dict(anatomy="labels", mr_subjects=0, pool_subjects=0, pool_fractions=[0.0], budgets=[16],
                  budget_draws=1, n_boot=50, rf_iter=3, pretrain_steps=100, epochs=2, siam_epochs=2, cnn_epochs=2),
    "sslhf": dict(anatomy="labels", hf_patients=24, rows=["SSLHF", "3D ResNet-50", "3D DenseNet-121"], n_folds=2,
                  curve_fractions=[], max_slices=2, proxy_steps=100, epochs=2, min_epochs=1, patience=1,
                  lrs=[0.00001]),
}


def cohort(run: Path, profile: str, n: int, workers: int) -> None:
    """The profile's phantom (notebook 00's image settings) for `n` subjects, made once in `run/cohort`."""
    from cmrlib.phantom import make_cohort
    sec = runner.load_profile(profile).get("00", {})
    make_cohort(run / "cohort", n=n, seed=0, n_frames=sec.get("n_frames"), workers=workers,
                **(sec.get("phantom_config") or {}))


def measure(run: Path, profile: str, method: str, rows: int | None) -> dict:
    """One shortened fit; its record, or the error that stopped it (the other methods still run)."""
    t0 = time.perf_counter()
    try:
        rec = fit(method, profile, run, SHORT[method], run / "fit" / method, rows)
    except Exception as e:  # a method that fails on this machine is a finding, not the end of the measurement
        traceback.print_exc()
        return dict(method=method, error=f"{type(e).__name__}: {e}", seconds=round(time.perf_counter() - t0, 1))
    return rec


def row(rec: dict) -> str:
    hw = rec.get("hardware", {})
    ep = hw.get("epoch_seconds", [])
    epochs = f"{len(ep)}: {min(ep):.1f} / {sorted(ep)[len(ep) // 2]:.1f} / {max(ep):.1f}" if ep else ""
    return (f"| {rec['method']} | {rec.get('seconds', '')} | {hw.get('device', '')} | {hw.get('peak_gpu_mib', '')} | "
            f"{epochs} | {rec.get('error', '')} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="scratch folder: the cohort and every fit's models and fit.json")
    ap.add_argument("--subjects", type=int, default=48)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--workers", type=int, default=8, help="processes making the cohort")
    ap.add_argument("--json", help="where the records go (default OUT/paper_fit.json), rewritten after every fit")
    a = ap.parse_args(argv)
    run = Path(a.out)
    cohort(run, a.profile, a.subjects, a.workers)
    recs, where = [], Path(a.json or run / "paper_fit.json")
    for m in a.methods:  # HeartMAE: its first row (MAE-ViT-B, the longest pretraining) stands for the family
        recs.append(measure(run, a.profile, m, 1 if m == "heartmae" else None))
        atomic_write_json(where, recs)
    print("| method | s (whole fit) | device | peak GPU MiB | epochs: min / median / max training s | error |\n"
          "|---|---|---|---|---|---|")
    print("\n".join(row(r) for r in recs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
