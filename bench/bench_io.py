"""Ingest speed: cines per second for the ACDC folder and the MVnet DICOM sample (real data; skipped when absent).

Run: `CMRLIB_DATA=/work/shared/data .venv/bin/python bench/bench_io.py`. Timings on a shared 2-core machine
are pessimistic when others are running.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cmrlib.io import ingest  # noqa: E402
from cmrlib.utils import data_root  # noqa: E402

CASES = (  # figure, source, folder under the data root, ingest options, target
    ("ingest ACDC training (100 patients), 1 worker: cines/s", "acdc", "acdc/training", {}, ">= 5"),
    ("ingest ACDC training (100 patients), 2 workers: cines/s", "acdc", "acdc/training", {"workers": 2}, ">= 8"),
    ("ingest MVnet DICOM sample (2CH + 4CH, 30 frames), 1 worker: cines/s", "dicom", "mvnet-dicom-sample", {},
     ">= 2"),
)


def rate(source: str, path: Path, **opts) -> float:
    """Cines per second for a fresh ingest into a temporary cohort (discovery, reads, writes, splits, manifest)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = ingest(source, path, Path(tmp) / "cohort", progress=False, **opts)
        return len(store) / (time.perf_counter() - t0)


def rows() -> list[dict]:
    root = data_root() or (Path(__file__).resolve().parents[2] / "shared" / "data")
    out = []
    for fig, source, sub, opts, target in CASES:
        p = root / sub
        value = f"{rate(source, p, **opts):.1f}" if p.exists() else f"skipped ({p} not found)"
        out.append(dict(figure=fig, value=value, target=target))
    return out


if __name__ == "__main__":
    for r in rows():
        print(f"{r['figure']} | {r['value']} | {r['target']}")
