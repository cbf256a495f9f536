"""M&Ms (Campello et al., IEEE TMI 2021): SAX cines `<code>/<code>_sa.nii.gz` + `_sa_gt.nii.gz`; labels 1=LV 2=MYO 3=RV.

Masks exist at the ED and ES frames only; the info CSV (`External code`, `VendorName`, `Vendor`, `Centre`,
`ED`, `ES` 0-based, and in later releases `Pathology`, `Sex`, `Age`, `Height`, `Weight`) can sit anywhere
under the root.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..record import Cine
from .common import (Item, canonical, check_shape, frame_interval_ms, frame_times, keyframe_cine, load_nifti, require,
                     sax_spacing, snake, to_rows_cols, walk, zooms)
from .errors import CorruptFileError, MetadataError, NonCineError

NAME = "mnms"


def read_info_csvs(root: str | Path, key: str) -> dict[str, dict]:
    """Rows of every CSV under root that has a `key` column, indexed by that column (as str)."""
    out: dict[str, dict] = {}
    for p in walk(root, "*.csv"):
        try:
            df = pd.read_csv(p, dtype=str, skipinitialspace=True)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
            raise CorruptFileError(p, f"cannot parse CSV ({e})") from e
        df.columns = [c.strip() for c in df.columns]
        if key in df.columns:
            for row in df.to_dict("records"):
                out[str(row[key]).strip()] = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
    return out


def _meta(row: dict, drop: tuple[str, ...]) -> dict:
    """CSV row -> snake_case metadata (numbers as numbers), without the id and frame columns."""
    out = {}
    for k, v in row.items():
        if k in drop or v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        try:
            out[snake(k)] = float(v) if "." in str(v) else int(v)
        except ValueError:
            out[snake(k)] = v
    return out


def read_mnms_subject(folder: str | Path, info: dict, subject: str | None = None) -> Cine:
    """One M&Ms subject -> a SAX cine with labels at ED and ES (ED/ES 0-based from the info CSV row)."""
    folder = Path(folder)
    code = folder.name
    img_path, gt_path = folder / f"{code}_sa.nii.gz", folder / f"{code}_sa_gt.nii.gz"
    require(bool(info), folder, f"no row for External code {code!r} in the info CSV", MetadataError)
    try:
        ed, es = int(info["ED"]), int(info["ES"])
    except (KeyError, TypeError, ValueError) as e:
        raise MetadataError(folder, f"info CSV row for {code!r} lacks a valid ED/ES ({e})") from e
    arr, img = load_nifti(img_path)
    require(arr.ndim == 4 and arr.shape[3] >= 2, img_path, f"expected a (X,Y,Z,T) cine, got shape {arr.shape}",
            NonCineError)
    pixels = to_rows_cols(arr).astype(np.float32)
    require(ed < len(pixels) and es < len(pixels), img_path, f"ED={ed}/ES={es} outside the {len(pixels)} frames",
            MetadataError)
    masks = {}
    if gt_path.exists():
        m, _ = load_nifti(gt_path)
        check_shape(m, arr.shape, gt_path, img_path)
        lab = canonical(to_rows_cols(m), NAME, gt_path)
        masks = {ed: lab[ed], es: lab[es]}
    interval, how = frame_interval_ms(img)
    meta = {**_meta(info, ("External code", "ED", "ES")), "frame_times": how, "label_source": NAME}
    return keyframe_cine(img_path, subject or f"mnms-{code}", "SAX", pixels, sax_spacing(zooms(img)),
                         frame_times(len(pixels), interval), ed, es, masks, NAME, meta)


def find(root: str | Path, **_) -> list[Item]:
    """Every `<code>/<code>_sa.nii.gz` under root, with its info CSV row."""
    root = Path(root)
    info = read_info_csvs(root, "External code")
    folders = sorted({p.parent for p in walk(root, "*_sa.nii.gz") if p.name == f"{p.parent.name}_sa.nii.gz"})
    return [Item(key=f.name, paths=(f,), subject=f"mnms-{f.name}", label=str(f), opts={"info": info.get(f.name, {})})
            for f in folders]


def read(item: Item, notes: list) -> list[Cine]:
    return [read_mnms_subject(item.paths[0], item.opts["info"], item.subject)]
