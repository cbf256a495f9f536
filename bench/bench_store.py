"""Cohort store speed: milliseconds to write and to read one cine (labels and landmarks included) at the smoke and
default profiles' phantom sizes, and to read only a SAX stack's ED and ES frames.

    .venv/bin/python bench/bench_store.py

zarr pays a fixed cost per chunk and per array, so a small cine's time is mostly that cost; the store therefore
puts as many whole frames in a chunk as fit in `cmrlib.store.CHUNK_BYTES`.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from timing import median_seconds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"smoke": dict(n_frames=20, matrix=96, pixel_mm=2.5), "default": dict(n_frames=30, matrix=128, pixel_mm=1.8)}


def rows() -> list[dict]:
    from cmrlib.phantom import simulate_subject
    from cmrlib.store import CohortStore

    out = []
    with tempfile.TemporaryDirectory() as d:
        for profile, size in SIZES.items():
            store = CohortStore(Path(d) / profile)
            cines = simulate_subject(0, 0, size)
            for view in ("4CH", "SAX"):
                cine = cines[view]
                cid = cine.cine_id
                store.write(cine)
                write = 1000 * median_seconds(lambda: store.write(cine, overwrite=True), 7)
                read = 1000 * median_seconds(lambda: store.read(cid), 7)
                shape = "x".join(map(str, cine.pixels.shape))
                out.append(dict(figure=f"store: write / read one {view} cine ({profile} size, {shape}, labels)",
                                value=f"{write:.0f} / {read:.0f} ms", target="report"))
                if view == "SAX" and profile == "default":
                    both = 1000 * median_seconds(lambda: store.read(cid, [cine.ed, cine.es]), 7)
                    out.append(dict(figure=f"store: read a {shape} SAX stack's ED and ES frames only",
                                    value=f"{both:.0f} ms", target="report"))
    return out


if __name__ == "__main__":
    for r in rows():
        print(f"{r['figure']} | {r['value']} | {r['target']}")
