"""A scanner's whole exam folder sorted and read: a synthetic 1,923-file, 24-series exam in one flat folder (the
size of a real Philips 1.5 T export: surveys, a 16-slice SAX cine stack of 30 phases, long-axis cines, flow,
late enhancement, mapping, 3D blocks), each vendor's naming and one without descriptions.

Run: `.venv/bin/python bench/bench_exam.py`. Each row: the median of 3 reads after one warm-up (headers of every
file, pixels of the chosen series only), the files' pages warm in the OS cache; target <= 30 s on 2 cores.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import median_seconds  # noqa: E402

from cmrlib.io import read_dicom_series  # noqa: E402
from cmrlib.phantom.exam import write_exam  # noqa: E402

FILES = 1923  # the real exam's count
CONFIG = dict(n_frames=30, matrix=192, pixel_mm=1.6, n_slices=16)  # 16 SAX slices of 30 phases at 1.6 mm, 192 px


def exam(folder: Path, vendor: str, descriptions: bool) -> tuple[Path, int]:
    """An exam of `FILES` files (the 3D blocks take the remainder); the folder and its number of files."""
    probe = write_exam(folder / "probe", vendor, descriptions, config=CONFIG)
    extra = (FILES - len(list(probe.iterdir()))) // 2
    out = write_exam(folder / "exam", vendor, descriptions, config=CONFIG, big=max(extra, 0))
    return out, len(list(out.iterdir()))


def rows() -> list[dict]:
    out = []
    for vendor, descriptions in (("philips", True), ("siemens", True), ("ge", True), ("philips", False)):
        with tempfile.TemporaryDirectory() as tmp:
            folder, n = exam(Path(tmp), vendor, descriptions)
            got = {}
            sec = median_seconds(lambda: got.update(cines=read_dicom_series(folder)), 3)
            views = "+".join(c.view for c in got["cines"])
            name = f"{vendor}'s naming" if descriptions else "no descriptions"
            out.append(dict(figure=f"sort and read a {n}-file, 24-series exam ({name}) -> {views}: s",
                            value=f"{sec:.1f}", target="<= 30"))
    return out


if __name__ == "__main__":
    for r in rows():
        print(f"{r['figure']} | {r['value']} | {r['target']}")
